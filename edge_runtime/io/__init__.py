"""What comes in and goes out of the vehicle: camera and file sources
(:mod:`.sources`), MQTT (:mod:`.mqtt`, its offline queue :mod:`.outbox`),
Home Assistant discovery (:mod:`.homeassistant`), brokers to run against
(:mod:`.broker`), the overlay and its views (:mod:`.overlay`, :mod:`.views`)."""
