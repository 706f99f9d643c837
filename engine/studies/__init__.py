"""Hyperparameter studies (Optuna) and scaling-law fits over finished runs."""
