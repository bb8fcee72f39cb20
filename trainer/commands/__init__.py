"""Command lines of the training side: every argparse of ``trainer`` lives
here, the library modules raise and never exit.

* :mod:`trainer.commands.train`: ``roadseg-train`` (a teacher into a run directory)
* :mod:`trainer.commands.evaluate`: ``roadseg-eval``
* :mod:`trainer.commands.data`: ``roadseg-data`` (statistics, previews, synthetic scenes)
* :mod:`trainer.commands.weights`: ``python -m trainer.commands.weights to-npz``
  (EfficientNet-Lite checkpoints as ``.npz``)
* :mod:`trainer.commands.common`: the flags and settings that ``roadseg-train``
  and ``roadseg-distill`` share, and the exit code of ``--time-budget``

``roadseg-distill`` and the any-backend trainer are in :mod:`distill.commands`
(they build students, which ``trainer`` must not import).
"""
