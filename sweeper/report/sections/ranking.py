"""The ranking: one row per configuration by mean validation score, the task's baseline for scale.

Two tables that fit a 1,280 px page: the ranking (score, verdict against #1, size, speed,
training, seeds) and its details (the full comparison with #1, the larger batch, kind of
latency, steps, time, failures).
"""

from __future__ import annotations

import pandas as pd

from sweeper.report import analysis
from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Section, Table
from sweeper.report.stats import Comparison, mean_interval, score_label
from sweeper.report.text import ci, num, score_header, test_score_cell, verdict

__all__ = ["baseline_row", "build", "latency_note"]


def latency_note(table: pd.DataFrame) -> str:
    """Where the table's latencies come from: the end-of-sweep round, or each trial's own timing."""
    sources = set(table["latency_source"].dropna()) if "latency_source" in table else set()
    if "interleaved" not in sources:
        return "Latency: each trial's own timing (medians over the trials of the same network)."
    rounds = next(len(r) for r in table["latency_rounds"] if isinstance(r, list))
    return (
        f"Latency: every distinct network reloaded and timed side by side in {rounds} interleaved rounds "
        "at the end of the sweep (median over rounds); comparisons use the ratio within each round"
        + (
            "; networks that could not be reloaded keep their trials' own timing, if their trials timed one."
            if "per trial" in sources
            else "."
        )
    )


def baseline_row(runs: pd.DataFrame) -> dict[str, object] | None:
    """The task's baseline (measured in every run, :mod:`sweeper.tasks.baselines`) as a ranking row, over seeds."""
    if "baseline_test_score" not in runs or runs["baseline_test_score"].isna().all():
        return None
    columns = [c for c in ("baseline_val_score", "baseline_test_score") if c in runs]
    scores = runs.dropna(subset=["baseline_test_score"]).groupby("seed")[columns].first()
    mean, low, high = mean_interval(scores["baseline_test_score"].tolist())
    names = runs["baseline"].dropna().unique() if "baseline" in runs else []
    val = scores["baseline_val_score"].mean() if "baseline_val_score" in scores else float("nan")
    return {
        "#": "—",
        "configuration": f"task baseline: {names[0] if len(names) == 1 else 'the task reference'}",
        f"val {score_label()} (%)": num(100 * val, ".1f"),
        score_header(): ci(mean, low, high),
        "seeds": len(scores),
    }


def _batch_label(runs: pd.DataFrame) -> str:
    values = runs["measure.latency_batch"].dropna().unique() if "measure.latency_batch" in runs else []
    return "≤" + "/".join(str(int(v)) for v in sorted(values)) if len(values) else "N"


def _rank(row: pd.Series) -> object:
    return "—" if pd.isna(row["rank"]) else int(row["rank"])


def _main_table(inputs: ReportInputs, verdicts: dict[str, Comparison | None]) -> Table:
    table = inputs.table
    rows = [
        {
            "#": _rank(r),
            "configuration": config,
            f"val {score_label()} (%)": num(100 * r["val_mean"], ".1f"),
            score_header(): test_score_cell(r) if pd.notna(r["score_mean"]) else "—",
            "vs #1": verdict(verdicts[str(config)]) if str(config) in verdicts else "—",
            "size (KiB)": num(r["size_bytes"] / 1024, ".1f"),
            "x smaller": num(r["compression_ratio"], ".2f"),
            "batch 1 (ms)": num(r["latency_ms"], ".3f"),
            "epochs in all": num(r["total_epochs"], ".0f"),
            "seeds": int(r["n_seeds"]),
        }
        for config, r in table.iterrows()
    ]
    baseline = baseline_row(inputs.runs)
    if baseline is not None and rows:  # what "good" means on this task, measured in the same runs
        rows.append({key: baseline.get(key, "—") for key in rows[0]})
    return Table(
        pd.DataFrame(rows),
        f"Ranked by mean validation {score_label()} over seeds; test {score_label()}: mean [95 % interval]; "
        f"vs #1: test {score_label()} against the first row (Holm over the table); x smaller: the dense float32 "
        "network's size over this artifact's; epochs in all: epochs run + fine-tuning + teacher (means over seeds); "
        "task baseline: the task's trivial reference, measured in the same runs. " + latency_note(table),
    )


def _words(comparison: Comparison | None) -> str:
    return "—" if comparison is None else comparison.words()


def _details_table(inputs: ReportInputs, verdicts: dict[str, Comparison | None]) -> Table:
    batch = _batch_label(inputs.runs)
    rows = [
        {
            "#": _rank(r),
            "configuration": config,
            "vs #1 in full": _words(verdicts.get(str(config))),
            f"per sample at batch {batch} (ms)": num(r["latency_ms_batch"], ".4f"),
            "latency kind": r["latency_kind"] or "—",
            "steps": num(r["steps"], ".0f"),
            "train time (s)": num(r["train_seconds"], ".1f"),
            "failed": int(r["n_failed"]),
            "pruned": int(r["n_pruned"]),
        }
        for config, r in inputs.table.iterrows()
    ]
    return Table(pd.DataFrame(rows), "Ranking, details: the comparison with #1, the larger batch, time and failures")


def build(inputs: ReportInputs) -> Section | None:
    """The ranking and its details (None when nothing finished)."""
    if inputs.ranked.empty:
        return None
    ranked = [str(c) for c in inputs.ranked.index]
    verdicts = dict(zip(ranked, analysis.versus_first(inputs.table, ranked), strict=True))
    return Section("Ranking", [_main_table(inputs, verdicts), _details_table(inputs, verdicts)])
