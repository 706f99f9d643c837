"""Music: the corpus and its tokens, generation from a checkpoint, musical metrics."""
