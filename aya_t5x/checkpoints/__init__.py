"""Checkpoint formats: Hugging Face safetensors, legacy T5X (msgpack + TensorStore)."""
