"""Dataset loading, format detection and row validation (``prepare.prepare`` / ``prepare.check_lengths``)."""
