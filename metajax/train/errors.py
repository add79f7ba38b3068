"""Errors a training run stops with."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class RunInterrupted(RuntimeError):
    """The run stopped on a signal (SIGTERM, Ctrl-C) after saving a checkpoint of where it was.

    ``exit_code`` is the shell's convention for a process ended by that signal, 128 + its number.
    """

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number
