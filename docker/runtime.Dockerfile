# roadseg vehicle runtime: the runtime and api extras only (no TensorFlow), non-root.
# Build for both architectures:
#   docker buildx build --platform linux/arm64,linux/amd64 -f docker/runtime.Dockerfile -t roadseg-runtime .
# Cameras: pass the device and the video group, e.g.
#   docker run --device /dev/video0 --group-add video -v $PWD/dist:/models:ro -p 8080:8080 \
#       -e ROADSEG_API_TOKEN=... roadseg-runtime \
#       --model /models/student.tflite --source v4l2:/dev/video0 --mqtt-host broker.local
# The device API listens on 0.0.0.0:8080 inside the container (ROADSEG_HTTP; publish it with -p and set a
# token), and the health check is the running loop's heartbeat: unhealthy when no loop iteration for 30 s.
# Model updates (issue 29): bake in the fleet's trust root (roadseg-release trust-root; a path inside the build
# context), then point the container at the release repository and keep its state in a volume:
#   docker buildx build --build-arg TRUST_ROOT=fleet/trust-root.json -f docker/runtime.Dockerfile -t roadseg-runtime .
#   docker run -v roadseg-state:/var/lib/roadseg -e ROADSEG_UPDATE_REPO=https://releases.example/fleet/ ...
# Without TRUST_ROOT the image has none and runs the model it is given, never a release.
# Raspberry Pi CSI cameras need libcamera from Raspberry Pi OS: run picamera2 sources on the host
# (scripts/install_pi.sh) rather than in this image.
FROM python:3.11-slim-bookworm

# the fleet's TUF root metadata, a path inside the build context; empty: no trust root, no updates
ARG TRUST_ROOT=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MALLOC_ARENA_MAX=2 \
    ROADSEG_HTTP=0.0.0.0:8080 ROADSEG_HEARTBEAT_FILE=/tmp/roadseg.heartbeat \
    ROADSEG_STATE_DIR=/var/lib/roadseg ROADSEG_TRUST_ROOT=${TRUST_ROOT:+/opt/roadseg/trust-root.json}
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
    && useradd --create-home --uid 10001 --groups video roadseg \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/roadseg
# the trust root, read-only for the vehicle (an empty ROADSEG_TRUST_ROOT is unset: roadseg-run has none)
RUN --mount=type=bind,target=/context \
    if [ -n "$TRUST_ROOT" ]; then install -m 0644 "/context/$TRUST_ROOT" /opt/roadseg/trust-root.json; fi
# the A/B model slots, the trusted TUF metadata and the offline MQTT queue: keep them in a volume
VOLUME /var/lib/roadseg
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import sys; from edge_runtime.io.device import heartbeat_age; sys.exit(heartbeat_age('/tmp/roadseg.heartbeat') > 30)"]
ENTRYPOINT ["roadseg-run"]
CMD ["--help"]
