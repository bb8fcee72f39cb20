# roadseg training on a GPU workstation: TensorFlow GPU base, the train extra.
#   docker build -f docker/train.Dockerfile -t roadseg-train .
#   docker run --gpus all --user "$(id -u):$(id -g)" -v /data/cityscapes:/data:ro -v "$PWD/runs:/opt/roadseg/runs" \
#       roadseg-train --arch segformer-b2 --data /data --size 512x1024 --epochs 80 --out runs/sf-b2
# --user runs as you, so the run directories in the bind-mounted runs/ are yours and writable (the image's
# own user, 10001, cannot write into a host folder owned by someone else); HOME is /tmp for any uid.
FROM tensorflow/tensorflow:2.21.0-gpu

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TF_USE_LEGACY_KERAS=1 SM_FRAMEWORK=tf.keras HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /opt/roadseg
COPY pyproject.toml README.md ./
COPY edge_runtime ./edge_runtime
COPY trainer ./trainer
COPY distill ./distill
COPY calibration ./calibration
COPY fleet ./fleet
# the local project: its dependency ranges live in pyproject.toml
# hadolint ignore=DL3013
RUN pip install ".[train]" \
    && useradd --create-home --uid 10001 roadseg \
    && mkdir -p /opt/roadseg/runs /opt/roadseg/dist \
    && chown roadseg /opt/roadseg/runs /opt/roadseg/dist
USER 10001
ENTRYPOINT ["roadseg-train"]
CMD ["--help"]
