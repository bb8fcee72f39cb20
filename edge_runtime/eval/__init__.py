"""Scoring on workstations and devices: metrics, dataset readers, evaluation, synthetic scenes and the speed benchmark."""
