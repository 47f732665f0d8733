"""The aya_t5x test suite."""
