"""Scoring on workstations and devices: :mod:`.metrics` (confusion matrix,
IoU, Dice), :mod:`.datasets` (Cityscapes and CamVid readers),
:mod:`.evaluation` (segmenters scored on a labelled split), :mod:`.synthetic`
(deterministic synthetic scenes) and :mod:`.bench` (the speed benchmark)."""
