"""Errors of the model layer, shared by both backends."""


class ModelError(ValueError):
    """The model file is missing, not a model this runtime reads, or not usable here."""
