"""roadseg's on-vehicle runtime, grouped by job:

* :mod:`edge_runtime.contract`: what training and the vehicle agree on (label
  taxonomy, the one preprocessing function, coverage, payloads, the sidecar).
* :mod:`edge_runtime.model`: loading a ``.tflite``/``.onnx`` model, checking
  its contract, the inference recipe; :mod:`edge_runtime.models`: the shipped model.
* :mod:`edge_runtime.io`: camera and file sources, MQTT publishing.
* :mod:`edge_runtime.api`: the device's HTTP API.
* :mod:`edge_runtime.eval`: metrics, dataset readers, evaluation, benchmark.
* :mod:`edge_runtime.commands`: every entry point and argparse.
* :mod:`edge_runtime.loop`: the run loop (capture -> segment -> summarize -> publish).

Never imports TensorFlow or Keras: tests/edge_runtime/test_isolation.py proves
it at run time, tests/test_structure.py from the source.
"""
__version__ = "0.1.0"
