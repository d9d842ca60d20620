"""Training: towers trained into a frozen text space with symmetric InfoNCE."""

from .loop import Progress, TrainConfig, Trainer

__all__ = ["Progress", "TrainConfig", "Trainer"]
