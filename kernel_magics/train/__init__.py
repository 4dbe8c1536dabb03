"""kernel_magics.train."""
