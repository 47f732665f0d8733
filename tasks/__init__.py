"""SeqIO task registrations, one module per data source or evaluation set.

Installed as aya_t5x.tasks.
"""
