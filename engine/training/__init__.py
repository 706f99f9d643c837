"""The training loop (``trainer.Trainer``, composed of batches, micro-batch planning, fault injection, the command
dispatcher, run monitors, evaluation and checkpointing) and its techniques: model, schedules, clipping, EMA,
curriculum, precision, DDP."""
