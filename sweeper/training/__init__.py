"""Training: optimizer construction, LR schedules, strategies and the training loop."""

from sweeper.training.loop import TrainingDiverged, TrainResult, train
from sweeper.training.optimizers import build_optimizers, muon_with_adamw
from sweeper.training.strategy import BatchGrowth, EarlyStopping, GradNoise, LRSchedule, Strategy

__all__ = [
    "BatchGrowth",
    "EarlyStopping",
    "GradNoise",
    "LRSchedule",
    "Strategy",
    "TrainResult",
    "TrainingDiverged",
    "build_optimizers",
    "muon_with_adamw",
    "train",
]
