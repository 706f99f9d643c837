"""The training loop and its techniques: model, schedules, clipping, EMA, curriculum, precision, DDP."""
