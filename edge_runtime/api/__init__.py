"""The device's HTTP API (FastAPI): segment an uploaded image, stats, the signed live view."""
