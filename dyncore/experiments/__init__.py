"""The book's experiments: generated data, task models, training and measurement.

One module per chapter's experiments (``ch02`` ... ``ch07``) and what they share
(:mod:`.metrics`, and :mod:`dyncore.training` for the optimizer loop). The operators and layers
themselves live in the method folders (``dyncore.dfn``, ``dyncore.ddf``, ...); nothing here is
needed to use them.
"""
