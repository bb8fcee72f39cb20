"""The contract between training and the vehicle, each in one module:
:mod:`.labels` (the 8-category taxonomy, dataset label tables, palette),
:mod:`.preprocessing` (the one resize of a frame to the model's input),
:mod:`.coverage` (per-class and per-zone fractions of a class map),
:mod:`.payloads` (the MQTT/HTTP payloads) and :mod:`.sidecar` (the model
sidecar's schema and its builder). NumPy/OpenCV/pydantic only."""
