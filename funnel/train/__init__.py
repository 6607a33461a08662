"""The training loop and what it needs: schedules, DDP, checkpoints, records, the W&B sink."""
