"""Command lines of distillation (every argparse of ``distill`` lives here):

* :mod:`distill.commands.distill`: ``roadseg-distill`` (a student from
  teachers' exports, with TensorFlow)
* :mod:`distill.commands.keras_backend`: ``python -m
  distill.commands.keras_backend pack|train``, the any-backend trainer of
  teachers and students (Keras 3 on JAX or PyTorch, no TensorFlow)

They live in ``distill`` because they build students, which ``trainer``
(the layer below) must not import.
"""
