"""The built-in demo: the whole recipe in miniature (corpus, training, evaluation, report)."""
