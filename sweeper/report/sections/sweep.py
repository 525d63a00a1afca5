"""What the sweep was: its runs and configurations, the split sizes, and where it sits among others."""

from __future__ import annotations

from datetime import datetime, timezone

from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Section
from sweeper.report.stats import score_label

__all__ = ["build", "split_sizes"]


def split_sizes(inputs: ReportInputs) -> str:
    """``Split sizes (samples): train 1,169, validation 269, test 359.`` (ranges when runs differ)."""
    ok = inputs.runs[inputs.runs["outcome"] == "ok"]
    columns = [c for c in ("train_samples", "val_samples", "test_samples") if c in ok and ok[c].notna().any()]
    if not columns:
        return "Split sizes: not logged by these runs (trials log `train_samples`, `val_samples`, `test_samples`)."

    def shown(column: str) -> str:
        values = ok[column].dropna().astype(int)
        low, high = values.min(), values.max()
        return f"{low:,}" if low == high else f"{low:,}–{high:,}"

    names = {"train_samples": "train", "val_samples": "validation", "test_samples": "test"}
    return "Split sizes (samples): " + ", ".join(f"{names[c]} {shown(c)}" for c in columns) + "."


def build(inputs: ReportInputs) -> Section:
    """Runs, outcomes, configurations, seeds, split sizes; a note when the sweep id held several sweeps."""
    runs, table = inputs.runs, inputs.table
    counts = runs["outcome"].value_counts()
    seeds = sorted(runs["seed"].dropna().unique()) if "seed" in runs else []
    return Section(
        "Sweep",
        [
            f"Experiment `{inputs.experiment or '?'}`, sweep `{inputs.sweep_id or '?'}`: {len(runs)} runs "
            f"({counts.get('ok', 0)} finished, {counts.get('failed', 0)} failed, {counts.get('pruned', 0)} pruned), "
            f"{len(table)} configurations, {len(seeds)} seed{'s' if len(seeds) != 1 else ''}. "
            f"Every choice is made on validation {score_label()}; test {score_label()} is reported for what was "
            f"chosen. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
            *([inputs.note] if inputs.note else []),
            split_sizes(inputs),
        ],
    )
