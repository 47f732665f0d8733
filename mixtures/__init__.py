"""SeqIO mixture registrations: the weighting schemes (installed as aya_t5x.mixtures)."""
