"""Parameter-efficient fine-tuning: LoRA adapters (`lora`) and which parameters train
(`trainable`). Saving, merging and PEFT export are in `aya_t5x.checkpoints.adapters`."""
