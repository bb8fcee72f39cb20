"""roadseg calibration: representative data, TFLite conversion, int8 accuracy gate, sidecar."""
