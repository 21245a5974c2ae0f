"""Writes of the training app, one module per concept: datasets (import), runs (start,
execute, gate, schedule) and evaluate (the served path on labelled files)."""
