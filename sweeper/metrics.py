"""The names of what every trial measures: one contract for MLflow, DataFrames, search and report."""

from __future__ import annotations

__all__ = ["FINAL_METRICS", "GROUPS", "PER_EPOCH_ONLY", "SELECTION_METRICS", "check_final_metrics"]

# The config groups every trial chooses an option from: its tags, its DataFrame columns, its label.
GROUPS = ("data", "model", "optimizer", "strategy", "compression")

# Logged once per trial (after the last epoch), all of the reloaded artifact unless noted.
FINAL_METRICS = (
    "test_score",  # the task's primary metric on the held-out test split: final numbers only, never selection
    "val_score",
    "best_val_score",  # best epoch during training
    "size_bytes",
    "compression_ratio",
    "latency_ms",
    "latency_iqr_ms",
    "latency_ms_batch",
    "params",
    "nonzero_params",
    "train_seconds",
    "compress_seconds",
    "epochs_run",
    "steps",
)
# What a search may select on: everything but the test split (each metric is also logged under its
# own name, val_<metric> / test_<metric>: val_accuracy, test_ndcg_at_10, ...; see sweeper.scoring).
SELECTION_METRICS = tuple(m for m in FINAL_METRICS if m != "test_score")
# Logged per epoch only (curves: `sweeper.tracking.results.load_history`).
PER_EPOCH_ONLY = frozenset({"train_loss", "lr", "batch_size"})


def check_final_metrics(metrics: dict[str, float]) -> None:
    """Every name of :data:`FINAL_METRICS`, each a finite-or-NaN float: what the DataFrames, search and report read.

    Raises:
        RuntimeError: a measurement left a contract metric out (a defect of the stage, not the input).

    Example:
        >>> check_final_metrics({"test_score": 0.9})
        Traceback (most recent call last):
        RuntimeError: the trial's metrics lack val_score, best_val_score, size_bytes, ...
    """
    missing = [name for name in FINAL_METRICS if name not in metrics]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise RuntimeError(f"the trial's metrics lack {shown}")
