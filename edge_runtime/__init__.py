"""roadseg's on-vehicle runtime: label taxonomy, preprocessing contract,
metrics, interpreter loading, camera sources, MQTT publishing, benchmark.

Never imports TensorFlow or Keras (tests/test_runtime_isolation.py proves it).
"""
__version__ = "0.1.0"
