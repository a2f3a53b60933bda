"""Training: the loop (AMP, DDP), safe checkpoints, segmentation metrics, evaluation."""
