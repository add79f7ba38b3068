"""Errors a training run stops with."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""
