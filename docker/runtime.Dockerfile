# roadseg vehicle runtime: the runtime and api extras only (no TensorFlow), non-root.
# Build for both architectures:
#   docker buildx build --platform linux/arm64,linux/amd64 -f docker/runtime.Dockerfile -t roadseg-runtime .
# Cameras: pass the device and the video group, e.g.
#   docker run --device /dev/video0 --group-add video -v $PWD/dist:/models:ro roadseg-runtime \
#       --model /models/student.tflite --source v4l2:/dev/video0 --mqtt-host broker.local
# Raspberry Pi CSI cameras need libcamera from Raspberry Pi OS: run picamera2 sources on the host
# (scripts/install_pi.sh) rather than in this image.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
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
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import edge_runtime.model.interpreter as i; i.interpreter_api()"]
ENTRYPOINT ["roadseg-run"]
CMD ["--help"]
