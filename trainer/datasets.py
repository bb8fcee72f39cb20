"""Dataset readers (Cityscapes and CamVid layouts). They live in
``edge_runtime.eval.datasets`` so a device with only the runtime extra can evaluate
a .tflite on a labelled folder; training imports them from here."""
from edge_runtime.eval.datasets import (  # noqa: F401
    FORMATS, IMAGE_EXTS, DatasetError, Sample, detect_format, list_samples, load_sample, read_image, read_label,
)
