"""Trusted checkpoints: atomic saves, retention, averaging."""
