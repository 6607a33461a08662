"""Datasets as the training loop sees them: `TaskData` with training phases and named evaluation sets."""
from .base import DatasetNotFoundError, Phase, TaskData, TensorSet

__all__ = ["DatasetNotFoundError", "Phase", "TaskData", "TensorSet"]
