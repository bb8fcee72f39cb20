"""The model on the device: loading a TFLite file (:mod:`.interpreter`), its
sidecar contract (:mod:`.sidecar`) and the inference recipe (:mod:`.segmenter`)."""
