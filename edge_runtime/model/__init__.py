"""The model on the device: loading a ``.tflite`` or ``.onnx`` file
(:mod:`.interpreter`, :mod:`.onnx`), checking its contract against what the
runtime will do with it (:mod:`.checks`, reading the sidecar of
:mod:`edge_runtime.contract.sidecar`) and the inference recipe (:mod:`.segmenter`)."""
