"""Dataset loading, format detection and row validation (``prepare`` / ``check_lengths``)."""

from .prepare import PreparedData, check_lengths, prepare

__all__ = ["PreparedData", "check_lengths", "prepare"]
