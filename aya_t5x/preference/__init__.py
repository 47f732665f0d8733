"""Preference tuning (the DPO family) for the encoder-decoder: pair data, objectives,
reference log-probabilities and the online round. See docs/preference.md."""
