"""Many fits at once: vmapped kernels and batch results."""
