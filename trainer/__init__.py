"""roadseg training: dataset readers, augmentation, teachers, losses, training
loop, evaluation reports and teacher export.

Importing the package is cheap; TensorFlow is imported by the modules that need
it (``trainer.pipeline``, ``trainer.models``, ...), not here.
"""
