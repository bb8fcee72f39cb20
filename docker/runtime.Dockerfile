# roadseg vehicle runtime: the runtime and api extras only (no TensorFlow), non-root.
# Build for both architectures:
#   docker buildx build --platform linux/arm64,linux/amd64 -f docker/runtime.Dockerfile -t roadseg-runtime .
# Cameras: pass the device and the video group, e.g.
#   docker run --device /dev/video0 --group-add video -v $PWD/dist:/models:ro -p 8080:8080 \
#       -e ROADSEG_API_TOKEN=... roadseg-runtime \
#       --model /models/student.tflite --source v4l2:/dev/video0 --mqtt-host broker.local
# The device API listens on 0.0.0.0:8080 inside the container (ROADSEG_HTTP; publish it with -p and set a
# token), and the health check is the running loop's heartbeat: unhealthy when no loop iteration for 30 s.
# Raspberry Pi CSI cameras need libcamera from Raspberry Pi OS: run picamera2 sources on the host
# (scripts/install_pi.sh) rather than in this image.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MALLOC_ARENA_MAX=2 \
    ROADSEG_HTTP=0.0.0.0:8080 ROADSEG_HEARTBEAT_FILE=/tmp/roadseg.heartbeat
WORKDIR /opt/roadseg
COPY pyproject.toml README.md ./
COPY edge_runtime ./edge_runtime
COPY trainer ./trainer
COPY distill ./distill
COPY calibration ./calibration
COPY fleet ./fleet
# the local project: its dependency ranges live in pyproject.toml
# hadolint ignore=DL3013
RUN pip install ".[runtime,api]" \
    && useradd --create-home --uid 10001 --groups video roadseg
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import sys; from edge_runtime.io.device import heartbeat_age; sys.exit(heartbeat_age('/tmp/roadseg.heartbeat') > 30)"]
ENTRYPOINT ["roadseg-run"]
CMD ["--help"]
