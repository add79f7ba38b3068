"""Errors raised when data cannot be found or read."""


class DataError(RuntimeError):
    """Data is missing, unreadable or not in the expected format.

    The message always says where the library looked and how to fix it.
    """
