"""Octo (Octo Model Team 2024): a transformer over task, observation and readout tokens with a
diffusion action head, ported to PyTorch and trained from scratch here."""
