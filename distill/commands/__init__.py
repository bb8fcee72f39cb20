"""Command lines of distillation (every argparse of ``distill`` lives here):

* :mod:`distill.commands.distill`: ``roadseg-distill`` (a student from
  teachers' exports, with TensorFlow)
* :mod:`distill.commands.pseudolabel`: ``python -m
  distill.commands.pseudolabel``, the teacher labels the frames vehicles
  kept (issue 30) into a dataset for ``roadseg-distill --extra-data``
* :mod:`distill.commands.keras_backend`: ``python -m
  distill.commands.keras_backend pack|train``, the any-backend trainer of
  teachers and students (Keras 3 on JAX or PyTorch, no TensorFlow)

They live in ``distill`` because they build students, which ``trainer``
(the layer below) must not import.
"""
