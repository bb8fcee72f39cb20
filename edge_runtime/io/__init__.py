"""What comes in and goes out of the vehicle: camera and file sources
(:mod:`.sources`) and MQTT publishing (:mod:`.publisher`)."""
