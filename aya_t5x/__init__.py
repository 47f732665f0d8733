"""aya_t5x: the Aya recipe (multilingual instruction tuning of mT5) as a T5X-style framework.

Importing the package is cheap; the heavy libraries (jax, flax, seqio, tensorflow) load
only when a submodule that needs them is imported.
"""

__version__ = "0.1.0"
