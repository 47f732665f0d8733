"""Tests of aya_t5x.checkpoints."""
