"""Experiments end to end: configs, the stages of `train.py`, results tables, the ablation runner."""
