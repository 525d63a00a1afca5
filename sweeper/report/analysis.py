"""Section tables: per-family summary, the optimizer comparison and the training strategies.

Each function takes the per-run frame (``config`` and ``outcome`` added) and/or the
per-configuration table of :func:`sweeper.report.grouping.group_configs`, and returns
plain DataFrames that the renderers turn into tables and the plots into curves.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sweeper.report.families import BASELINE
from sweeper.report.grouping import baseline_for, tied

__all__ = [
    "baseline_runs",
    "epochs_to_target",
    "family_summary",
    "learning_curves",
    "lr_sensitivity",
    "optimizer_summary",
    "strategy_summary",
    "target_accuracy",
]


def _best_per(table: pd.DataFrame, column: str) -> pd.DataFrame:
    ranked = table[table["acc_mean"].notna()]
    return ranked.sort_values("acc_mean", ascending=False).groupby(column, sort=False).head(1)


def family_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Each compression family's best configuration against its `none` baseline.

    Columns: ``family``, ``methods`` (options run), ``configs``, ``best``, ``baseline``,
    ``size_ratio`` (baseline size / size: x smaller), ``latency_ratio`` (latency at batch 1 /
    baseline's: > 1 is slower), ``accuracy_delta_pp``, ``tie`` (within the seeds' spread).
    Empty when the sweep has no `none` configuration or nothing else.
    """
    rows = []
    ranked = table[table["acc_mean"].notna()]
    for family, group in ranked[ranked["compression"] != BASELINE].groupby("family", sort=True):
        best = str(group["acc_mean"].idxmax())
        base = baseline_for(table, best)
        if base is None:
            continue
        a, b = table.loc[best], table.loc[base]
        rows.append({
            "family": family,
            "methods": ", ".join(sorted(group["compression"].astype(str).unique())),
            "configs": len(group),
            "best": best,
            "baseline": base,
            "size_ratio": b["size_bytes"] / a["size_bytes"],
            "latency_ratio": a["latency_ms"] / b["latency_ms"],
            "latency_kind": a["latency_kind"],
            "accuracy_delta_pp": 100 * (a["acc_mean"] - b["acc_mean"]),
            "tie": tied(a["acc_mean"], a["acc_std"], b["acc_mean"], b["acc_std"]),
        })
    return pd.DataFrame(rows)


def baseline_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Finished runs to compare training on: the uncompressed ones when the sweep has any.

    Returns the runs and a phrase saying which they are.
    """
    ok = runs[runs["outcome"] == "ok"]
    if "compression" in ok and (ok["compression"] == BASELINE).any() and ok["compression"].nunique() > 1:
        return ok[ok["compression"] == BASELINE], f"runs with compression={BASELINE}"
    return ok, "all finished runs"


def lr_sensitivity(runs: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy against learning rate: ``optimizer``, ``lr``, ``mean``, ``std``, ``n`` (runs)."""
    chosen = runs[runs["lr"].notna()] if "lr" in runs else runs.iloc[0:0]
    if chosen.empty:
        return pd.DataFrame(columns=["optimizer", "lr", "mean", "std", "n"])
    grouped = chosen.assign(lr=chosen["lr"].astype(float)).groupby(["optimizer", "lr"])["test_accuracy"]
    return grouped.agg(["mean", "std", "count"]).rename(columns={"count": "n"}).reset_index()


def target_accuracy(runs: pd.DataFrame) -> float:
    """The validation accuracy that defines "speed": 90 % of the best any run reached (0 if none)."""
    best = runs["best_val_accuracy"].max() if "best_val_accuracy" in runs else math.nan
    return 0.0 if pd.isna(best) else 0.9 * float(best)


def epochs_to_target(history: pd.DataFrame, target: float) -> dict[str, float]:
    """Per run id: the first epoch (1-based) whose val_accuracy >= ``target``; NaN if never."""
    val = history[history["metric"] == "val_accuracy"]
    result: dict[str, float] = {}
    for run_id, curve in val.groupby("run_id"):
        reached = curve[curve["value"] >= target]
        result[str(run_id)] = float(reached["epoch"].min() + 1) if len(reached) else math.nan
    return result


def optimizer_summary(runs: pd.DataFrame, table: pd.DataFrame, history: pd.DataFrame,
                      target: float) -> pd.DataFrame:
    """DeepOBS-style comparison, one row per optimizer.

    Columns: ``optimizer``, ``best`` (its most accurate configuration), ``lr`` of that one,
    ``acc_mean``, ``acc_std`` (over seeds), ``n_seeds``, ``epochs_to_target`` (median over
    the best configuration's seeds; NaN if not reached), ``reached`` (seeds reaching it),
    ``lrs_tried`` and ``tunability`` (share of tried learning rates whose mean accuracy is
    within 1 pp of the optimizer's best learning rate).
    """
    sensitivity = lr_sensitivity(runs)
    speed = epochs_to_target(history, target)
    rows = []
    for config, best in _best_per(table[table.index.isin(runs["config"])], "optimizer").iterrows():
        opt_name = best["optimizer"]
        epochs = [speed.get(str(i), math.nan) for i in runs.loc[runs["config"] == config, "run_id"]]
        curve = sensitivity[sensitivity["optimizer"] == opt_name]
        share = float((curve["mean"] >= curve["mean"].max() - 0.01).mean()) if len(curve) else math.nan
        rows.append({
            "optimizer": opt_name,
            "best": config,
            "lr": best["lr"],
            "acc_mean": best["acc_mean"],
            "acc_std": best["acc_std"],
            "n_seeds": best["n_seeds"],
            "epochs_to_target": float(np.nanmedian(epochs)) if any(not math.isnan(e) for e in epochs) else math.nan,
            "reached": f"{sum(not math.isnan(e) for e in epochs)}/{len(epochs)}",
            "lrs_tried": len(curve),
            "tunability": share,
        })
    return pd.DataFrame(rows)


def strategy_summary(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Each training strategy's best configuration: accuracy and epochs run against planned.

    Columns: ``strategy``, ``best``, ``acc_mean``, ``acc_std``, ``n_seeds``, ``epochs_run``
    (mean), ``epochs_planned`` (``strategy.epochs``), ``saving`` (share of planned epochs not
    run, early stopping's saving), ``train_seconds`` (mean).
    """
    rows = []
    for config, best in _best_per(table[table.index.isin(runs["config"])], "strategy").iterrows():
        chosen = runs[runs["config"] == config]
        planned = chosen["strategy.epochs"].astype(float).mean() if "strategy.epochs" in chosen else math.nan
        rows.append({
            "strategy": best["strategy"],
            "best": config,
            "acc_mean": best["acc_mean"],
            "acc_std": best["acc_std"],
            "n_seeds": best["n_seeds"],
            "epochs_run": best["epochs_run"],
            "epochs_planned": planned,
            "saving": 1 - best["epochs_run"] / planned if planned else math.nan,
            "train_seconds": best["train_seconds"],
        })
    return pd.DataFrame(rows)


def learning_curves(runs: pd.DataFrame, history: pd.DataFrame, configs: dict[str, str]) -> pd.DataFrame:
    """Mean per-epoch curves of chosen configurations: ``name``, ``metric``, ``epoch``, ``mean``, ``std``.

    Args:
        runs: the per-run frame (``run_id``, ``config``).
        history: :func:`sweeper.results.load_history` output.
        configs: curve name -> configuration label (e.g. a strategy -> its best configuration).
    """
    frames = []
    for name, config in configs.items():
        ids = set(runs.loc[runs["config"] == config, "run_id"].astype(str))
        part = history[history["run_id"].astype(str).isin(ids)]
        if part.empty:
            continue
        stats = part.groupby(["metric", "epoch"])["value"].agg(["mean", "std"]).reset_index()
        frames.append(stats.assign(name=name))
    if not frames:
        return pd.DataFrame(columns=["name", "metric", "epoch", "mean", "std"])
    return pd.concat(frames, ignore_index=True)[["name", "metric", "epoch", "mean", "std"]]
