"""roadseg training: dataset readers, augmentation, teachers, losses, training
loop, evaluation reports and teacher export.

segmentation-models 1.0.1 runs on legacy Keras 2 (tf-keras): these variables
must be set before TensorFlow is first imported in the process. Keras 3 code
(keras-hub, the students) imports ``keras`` directly; both coexist. Importing
the package is cheap: TensorFlow is imported by the modules that need it.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
