"""The contract between training and the vehicle: the label taxonomy, the one preprocessing function, coverage counting, the MQTT/HTTP payloads and the model sidecar."""
