"""Section tables: per-family summary, the optimizer comparison and the training strategies.

Each function takes the per-run frame (``config`` and ``outcome`` added) and/or the
per-configuration table of :func:`sweeper.report.grouping.group_configs`, and returns
plain DataFrames that the renderers turn into tables and the plots into curves.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sweeper.report.families import UNCOMPRESSED
from sweeper.report.grouping import compare_configs, strength_columns, uncompressed_for, with_score_names
from sweeper.report.stats import SCORE, SELECT, Comparison, decide, mean_interval

__all__ = [
    "epochs_to_target",
    "family_summary",
    "learning_curves",
    "lr_sensitivity",
    "matched_ratios",
    "optimizer_summary",
    "ratio_curves",
    "strategy_summary",
    "target_accuracy",
    "training_runs",
    "versus_first",
]


def _best_per(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Each value of ``column``'s configuration with the best mean validation score."""
    ranked = table[table["score_mean"].notna()]
    return ranked.sort_values("val_mean", ascending=False).groupby(column, sort=False).head(1)


def versus_first(table: pd.DataFrame, configs: list[str]) -> list[Comparison | None]:
    """Each of ``configs`` against the first (None for the first itself), Holm-adjusted together."""
    if not configs:
        return []
    decided = decide([compare_configs(table, c, configs[0]) for c in configs[1:]])
    return [None, *decided]


def family_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Each compression family's configuration with the best validation score against the uncompressed `none`.

    Columns: ``family``, ``methods`` (options run), ``configs``, ``best``, ``uncompressed``,
    ``size_ratio`` (uncompressed size / size: x smaller), ``latency_ratio`` (latency at batch 1 /
    uncompressed's: > 1 is slower), ``score_delta_pp`` (test), ``comparison`` (the test-score
    comparison, Holm-adjusted over the families), ``significant``, ``epochs`` and ``uncompressed_epochs``
    (total epochs incl. fine-tuning and teacher). Empty when the sweep has no `none`
    configuration or nothing else.
    """
    rows = []
    table = with_score_names(table)
    ranked = table[table["score_mean"].notna()]
    for family, group in ranked[ranked["compression"] != UNCOMPRESSED].groupby("family", sort=True):
        best = str(group["val_mean"].idxmax())
        base = uncompressed_for(table, best)
        if base is None:
            continue
        a, b = table.loc[best], table.loc[base]
        rows.append(
            {
                "family": family,
                "methods": ", ".join(sorted(group["compression"].astype(str).unique())),
                "configs": len(group),
                "best": best,
                "uncompressed": base,
                "size_ratio": b["size_bytes"] / a["size_bytes"],
                "latency_ratio": a["latency_ms"] / b["latency_ms"],
                "latency_kind": a["latency_kind"],
                "score_delta_pp": 100 * (a["score_mean"] - b["score_mean"]),
                "comparison": compare_configs(table, best, base),
                "epochs": a["total_epochs"],
                "uncompressed_epochs": b["total_epochs"],
            }
        )
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["comparison"] = decide(list(frame["comparison"]))
        frame["significant"] = [c.significant for c in frame["comparison"]]
    return frame


def training_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Finished runs to compare training on: the uncompressed ones when the sweep has any.

    Returns the runs and a phrase saying which they are.
    """
    ok = runs[runs["outcome"] == "ok"]
    if "compression" in ok and (ok["compression"] == UNCOMPRESSED).any() and ok["compression"].nunique() > 1:
        return ok[ok["compression"] == UNCOMPRESSED], f"runs with compression={UNCOMPRESSED}"
    return ok, "all finished runs"


def lr_sensitivity(runs: pd.DataFrame) -> pd.DataFrame:
    """Validation accuracy against learning rate (what selects the lr).

    Columns: ``optimizer``, ``lr``, ``mean``, ``low``, ``high`` (95 % t-interval; NaN for one
    seed), ``n`` (runs), ``test_mean``.
    """
    columns = ["optimizer", "lr", "mean", "low", "high", "n", "test_mean"]
    chosen = runs[runs["lr"].notna()] if "lr" in runs else runs.iloc[0:0]
    if chosen.empty:
        return pd.DataFrame(columns=columns)
    chosen = chosen.assign(
        lr=chosen["lr"].astype(float), _sel=chosen[SELECT].fillna(chosen[SCORE]) if SELECT in chosen else chosen[SCORE]
    )
    rows = []
    for (optimizer, lr), group in chosen.groupby(["optimizer", "lr"]):
        mean, low, high = mean_interval(group["_sel"].astype(float).tolist())
        rows.append(
            {
                "optimizer": optimizer,
                "lr": lr,
                "mean": mean,
                "low": low,
                "high": high,
                "n": len(group),
                "test_mean": float(group[SCORE].astype(float).mean()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def target_accuracy(runs: pd.DataFrame) -> float:
    """The validation accuracy that defines "speed": 90 % of the best any run reached (0 if none)."""
    best = runs["best_val_score"].max() if "best_val_score" in runs else math.nan
    return 0.0 if pd.isna(best) else 0.9 * float(best)


def epochs_to_target(history: pd.DataFrame, target: float) -> dict[str, float]:
    """Per run id: the first epoch (1-based) whose val_score >= ``target``; NaN if never."""
    val = history[history["metric"] == "val_score"]
    result: dict[str, float] = {}
    for run_id, curve in val.groupby("run_id"):
        reached = curve[curve["value"] >= target]
        result[str(run_id)] = float(reached["epoch"].min() + 1) if len(reached) else math.nan
    return result


def optimizer_summary(runs: pd.DataFrame, table: pd.DataFrame, history: pd.DataFrame, target: float) -> pd.DataFrame:
    """DeepOBS-style comparison, one row per optimizer.

    Columns: ``optimizer``, ``best`` (its configuration with the best mean validation
    accuracy: the lr is selected on validation), ``lr`` of that one, ``score_mean``,
    ``score_low``, ``score_high``, ``score_std`` (test, over seeds), ``n_seeds``, ``comparison``
    (against the first row's optimizer, Holm-adjusted; None for the first),
    ``epochs_to_target`` (median over the best configuration's seeds; NaN if not reached),
    ``reached`` (seeds reaching it), ``lrs_tried`` and ``tunability`` (share of tried
    learning rates whose mean validation accuracy is within 1 pp of the best one's).
    Rows: best validation accuracy first.
    """
    sensitivity = lr_sensitivity(runs)
    speed = epochs_to_target(history, target)
    rows = []
    bests = _best_per(table[table.index.isin(runs["config"])], "optimizer")
    for (config, best), comparison in zip(bests.iterrows(), versus_first(table, list(bests.index)), strict=True):
        opt_name = best["optimizer"]
        epochs = [speed.get(str(i), math.nan) for i in runs.loc[runs["config"] == config, "run_id"]]
        curve = sensitivity[sensitivity["optimizer"] == opt_name]
        share = float((curve["mean"] >= curve["mean"].max() - 0.01).mean()) if len(curve) else math.nan
        rows.append(
            {
                "optimizer": opt_name,
                "best": config,
                "lr": best["lr"],
                **_accuracy(best, comparison),
                "epochs_to_target": float(np.nanmedian(epochs)) if any(not math.isnan(e) for e in epochs) else math.nan,
                "reached": f"{sum(not math.isnan(e) for e in epochs)}/{len(epochs)}",
                "lrs_tried": len(curve),
                "tunability": share,
            }
        )
    return pd.DataFrame(rows)


def _accuracy(row: pd.Series, comparison: Comparison | None) -> dict[str, object]:
    """The test-accuracy columns of a summary row."""
    return {
        "score_mean": row["score_mean"],
        "score_low": row["score_low"],
        "score_high": row["score_high"],
        "score_std": row["score_std"],
        "n_seeds": row["n_seeds"],
        "comparison": comparison,
    }


def strategy_summary(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Each training strategy's best configuration: accuracy and epochs run against planned.

    Columns: ``strategy``, ``best`` (best mean validation accuracy), ``score_mean``, ``score_low``,
    ``score_high``, ``score_std``, ``n_seeds``, ``comparison`` (as in :func:`optimizer_summary`), ``epochs_run``
    (mean), ``epochs_planned`` (``strategy.epochs``), ``saving`` (share of planned epochs not
    run, early stopping's saving), ``train_seconds`` (mean).
    """
    rows = []
    bests = _best_per(table[table.index.isin(runs["config"])], "strategy")
    for (config, best), comparison in zip(bests.iterrows(), versus_first(table, list(bests.index)), strict=True):
        chosen = runs[runs["config"] == config]
        # what the runs planned (an equal-budget `none` plans more than its strategy.epochs)
        column = "epochs_planned" if "epochs_planned" in chosen and chosen["epochs_planned"].notna().any() else None
        column = column or ("strategy.epochs" if "strategy.epochs" in chosen else None)
        planned = chosen[column].astype(float).mean() if column else math.nan
        rows.append(
            {
                "strategy": best["strategy"],
                "best": config,
                **_accuracy(best, comparison),
                "epochs_run": best["epochs_run"],
                "epochs_planned": planned,
                "saving": 1 - best["epochs_run"] / planned if planned else math.nan,
                "train_seconds": best["train_seconds"],
            }
        )
    return pd.DataFrame(rows)


def learning_curves(runs: pd.DataFrame, history: pd.DataFrame, configs: dict[str, str]) -> pd.DataFrame:
    """Mean per-epoch curves of chosen configurations: ``name``, ``metric``, ``epoch``, ``mean``, ``std``.

    Args:
        runs: the per-run frame (``run_id``, ``config``).
        history: :func:`sweeper.tracking.results.load_history` output.
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


def ratio_curves(table: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy against compression ratio per family, when the sweep varies a strength.

    A point is a configuration (mean over seeds, 95 % t-interval); the uncompressed `none` is
    the point at ratio 1 of every family's curve in the plot, not a family of its own.
    Empty unless the sweep varies a compression strength
    (:func:`sweeper.report.grouping.strength_columns`) and some family has configurations at
    two or more compression ratios.

    Columns: ``family``, ``config``, ``ratio``, ``mean``, ``low``, ``high``, ``n_seeds``.
    """
    columns = ["family", "config", "ratio", "mean", "low", "high", "n_seeds"]
    table = with_score_names(table)
    ranked = table[table["score_mean"].notna() & table["compression_ratio"].notna()]
    ranked = ranked[ranked["compression"] != UNCOMPRESSED]
    frame = pd.DataFrame(
        {
            "family": ranked["family"],
            "config": ranked.index,
            "ratio": ranked["compression_ratio"],
            "mean": ranked["score_mean"],
            "low": ranked["score_low"],
            "high": ranked["score_high"],
            "n_seeds": ranked["n_seeds"],
        },
        columns=columns,
    ).reset_index(drop=True)
    varied = [c for c in strength_columns(table) if table[c].nunique() > 1] if len(frame) else []
    if not varied or frame.groupby("family")["ratio"].nunique().max() < 2:
        return pd.DataFrame(columns=columns)
    return frame.sort_values(["family", "ratio"]).reset_index(drop=True)


def matched_ratios(curves: pd.DataFrame, points: int = 4) -> pd.DataFrame:
    """Families compared at the same compression ratios, interpolated linearly in log ratio.

    Each family's curve (mean test accuracy over seeds per configuration, several
    configurations at one ratio averaged) is interpolated at ``points`` ratios spread
    evenly (in log) over the range every pair of families shares; no extrapolation.

    Returns:
        Columns ``family_a``, ``family_b``, ``ratio``, ``score_a``, ``score_b``, ``delta_pp``
        (A - B); empty when no two families overlap.

    Example:
        >>> curves = pd.DataFrame({"family": ["p", "p", "q", "q"], "ratio": [2.0, 8.0, 4.0, 8.0],
        ...                        "mean": [0.9, 0.7, 0.85, 0.8]})
        >>> matched_ratios(curves, points=2)[["ratio", "score_a", "score_b"]].round(3).values.tolist()
        [[4.0, 0.8, 0.85], [8.0, 0.7, 0.8]]
    """
    columns = ["family_a", "family_b", "ratio", "score_a", "score_b", "delta_pp"]
    per_family = {
        family: group.groupby("ratio")["mean"].mean().sort_index()
        for family, group in curves.groupby("family", sort=True)
        if group["ratio"].nunique() >= 2
    }
    rows = []
    families = sorted(per_family)
    for i, fa in enumerate(families):
        for fb in families[i + 1 :]:
            a, b = per_family[fa], per_family[fb]
            low, high = max(a.index.min(), b.index.min()), min(a.index.max(), b.index.max())
            if not low < high:
                continue
            for ratio in np.geomspace(low, high, points):
                score_a = float(np.interp(np.log(ratio), np.log(a.index.to_numpy(float)), a.to_numpy(float)))
                score_b = float(np.interp(np.log(ratio), np.log(b.index.to_numpy(float)), b.to_numpy(float)))
                rows.append(
                    {
                        "family_a": fa,
                        "family_b": fb,
                        "ratio": float(ratio),
                        "score_a": score_a,
                        "score_b": score_b,
                        "delta_pp": 100 * (score_a - score_b),
                    }
                )
    return pd.DataFrame(rows, columns=columns)
