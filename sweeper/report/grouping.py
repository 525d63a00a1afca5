"""From trials to configurations: which runs count, what a configuration is, and its stats over seeds.

A *configuration* is every config value that varies in the sweep except ``seed``; the
runs of one configuration differ only by seed, and the report shows their mean and spread.
"""

from __future__ import annotations

import math

import pandas as pd

from sweeper.report.families import BASELINE, family_of
from sweeper.results import GROUP_COLUMNS

__all__ = ["REQUIRED_METRICS", "baseline_for", "classify", "config_labels", "group_configs", "network_keys", "tied"]

REQUIRED_METRICS = ("test_accuracy", "size_bytes", "latency_ms")
_IGNORED_PREFIXES = ("tracking.", "hydra.")
_MEANS = ["size_bytes", "compression_ratio", "latency_ms", "latency_ms_batch", "train_seconds", "epochs_run"]


def classify(runs: pd.DataFrame) -> pd.DataFrame:
    """``outcome`` (``ok``, ``failed`` or ``pruned``) and ``reason`` of each run.

    A run is ``ok`` when it FINISHED with every metric in :data:`REQUIRED_METRICS`;
    ``pruned`` when an Optuna pruner stopped it (tag ``optuna_state=PRUNED``); else ``failed``.
    """
    state = runs.get("optuna_state", pd.Series(index=runs.index, dtype=object)).fillna("").astype(str)
    pruned = state.str.upper() == "PRUNED"
    outcome = pd.Series("ok", index=runs.index, dtype=object)
    reason = runs.get("failure_reason", pd.Series(index=runs.index, dtype=object)).fillna("").astype(str)
    for i in runs.index:
        missing = [m for m in REQUIRED_METRICS if m not in runs or pd.isna(runs.at[i, m])]
        if pruned[i]:
            outcome[i], reason[i] = "pruned", reason[i] or "pruned by the Optuna pruner"
        elif runs.at[i, "status"] != "FINISHED":
            outcome[i], reason[i] = "failed", reason[i] or f"status {runs.at[i, 'status']}"
        elif missing:
            outcome[i], reason[i] = "failed", f"missing metric(s): {', '.join(missing)}"
    return pd.DataFrame({"outcome": outcome, "reason": reason})


def _key(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _exact_key(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(value)


def _candidate_columns(runs: pd.DataFrame) -> list[str]:
    dotted = sorted(c for c in runs.columns if "." in c and not c.startswith(_IGNORED_PREFIXES))
    return [c for c in GROUP_COLUMNS if c in runs] + dotted


def config_labels(runs: pd.DataFrame) -> pd.Series:
    """A readable label per run naming its configuration from what varies, e.g. ``optimizer=adam``.

    Group choices that vary are named; a dotted config value is named when it varies
    among runs with the same group choices (an override such as ``optimizer.lr=0.01``).
    Runs that differ only by seed get the same label.
    """
    keys = pd.DataFrame({c: runs[c].map(_key) for c in _candidate_columns(runs)}, index=runs.index)
    groups = [c for c in GROUP_COLUMNS if c in keys]
    varying = [c for c in keys if keys[c].nunique() > 1]
    named = [c for c in groups if c in varying]
    by_choice = keys.groupby(groups, dropna=False) if groups else None
    for column in varying:
        if column in groups:
            continue
        spread = by_choice[column].nunique().max() if by_choice is not None else keys[column].nunique()
        if spread > 1:
            named.append(column)
    if not named:  # a single configuration: name its main choices
        named = [c for c in ("model", "optimizer", "strategy", "compression") if c in keys]
    return keys[named].apply(lambda row: " ".join(f"{c}={v}" for c, v in row.items() if v != ""), axis=1).astype(str)


def _first(values: pd.Series) -> object:
    present = values.dropna()
    return present.iloc[0] if len(present) else None


_NETWORK_GROUPS = ("data", "model")
_NETWORK_SHAPE = ("params", "nonzero_params", "size_bytes", "latency_kind")
_MEASUREMENT = ("device", "threads", "measure.latency_batch")  # how the latency was taken
_LATENCIES = ("latency_ms", "latency_ms_batch")


def network_keys(runs: pd.DataFrame) -> pd.Series:
    """Which deployed network each run measured: data and model settings, and the artifact's shape.

    Two runs with the same task and model config whose artifacts have the same parameter
    count, non-zero count, size on disk and kind of kernels run the same computation
    (e.g. two optimizers, or a distilled student and the student trained alone), so any
    difference in their measured latency is timing noise, when it was measured the same way
    (device, threads, batch). Values are compared exactly, not rounded as in labels.
    """
    prefixes = tuple(f"{g}." for g in _NETWORK_GROUPS)
    identity = (*_NETWORK_GROUPS, *_NETWORK_SHAPE, *_MEASUREMENT)
    columns = [c for c in runs.columns if c in identity or c.startswith(prefixes)]
    keys = pd.DataFrame({c: runs[c].map(_exact_key) for c in sorted(columns)}, index=runs.index)
    return keys.apply(lambda row: "|".join(row), axis=1) if columns else pd.Series("", index=runs.index)


def _pooled_latency(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run, the median latency over every finished run of the same deployed network."""
    ok = runs[runs["outcome"] == "ok"]
    network = network_keys(runs)
    present = [m for m in _LATENCIES if m in runs]
    medians = ok[present].astype(float).groupby(network[ok.index]).median()
    return pd.DataFrame({m: network.map(medians[m]) for m in present}, index=runs.index)


def group_configs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration, best mean test accuracy first.

    Args:
        runs: :func:`sweeper.results.load_runs` output with ``config``, ``outcome`` columns
            added (see :func:`config_labels` and :func:`classify`).

    Returns:
        Index ``config``; columns ``rank`` (1 = best; NaN when no run finished), ``family``,
        the group choices, ``lr``, ``acc_mean``, ``acc_std`` (sample std over seeds, NaN
        for one seed), ``accuracies`` (per seed), ``n_seeds`` (finished runs), ``n_failed``,
        ``n_pruned``, ``latency_kind`` and the means of ``size_bytes``, ``compression_ratio``,
        ``latency_ms``, ``latency_ms_batch``, ``train_seconds``, ``epochs_run``. The latencies
        are the median over all finished runs of the same deployed network (`network_keys`),
        so configurations that differ only in how the network was trained share one latency.
    """
    pooled = _pooled_latency(runs)
    runs = runs.assign(**{metric: pooled[metric] for metric in pooled})
    rows = []
    for label, group in runs.groupby("config", sort=False):
        ok = group[group["outcome"] == "ok"]
        row: dict[str, object] = {"config": label}
        for column in [*GROUP_COLUMNS, "lr"]:
            row[column] = _first(group[column]) if column in group else None
        row["family"] = family_of(row["compression"]) if row["compression"] is not None else "other"
        accuracies = ok["test_accuracy"].astype(float).tolist()
        row["accuracies"] = accuracies
        row["acc_mean"] = float(pd.Series(accuracies).mean()) if accuracies else math.nan
        row["acc_std"] = float(pd.Series(accuracies).std(ddof=1)) if len(accuracies) > 1 else math.nan
        row["n_seeds"] = len(ok)
        row["n_failed"] = int((group["outcome"] == "failed").sum())
        row["n_pruned"] = int((group["outcome"] == "pruned").sum())
        row["latency_kind"] = _first(ok["latency_kind"]) if "latency_kind" in ok else None
        for metric in _MEANS:
            row[metric] = float(ok[metric].astype(float).mean()) if metric in ok and len(ok) else math.nan
        rows.append(row)
    table = pd.DataFrame(rows).set_index("config")
    table = table.sort_values(["acc_mean", "size_bytes"], ascending=[False, True], na_position="last")
    ranked = table["acc_mean"].notna()
    table["rank"] = pd.Series(range(1, int(ranked.sum()) + 1), index=table.index[ranked])
    return table


def tied(mean_a: float, std_a: float, mean_b: float, std_b: float) -> bool:
    """Whether two accuracies are a tie: their intervals mean ± 1 std over seeds overlap.

    A configuration with one seed has no measured spread; its interval is the point itself.

    Example:
        >>> tied(0.90, 0.01, 0.91, 0.005), tied(0.90, 0.001, 0.95, 0.001)
        (True, False)
    """
    spread_a = 0.0 if math.isnan(std_a) else std_a
    spread_b = 0.0 if math.isnan(std_b) else std_b
    return abs(mean_a - mean_b) <= spread_a + spread_b


def baseline_for(table: pd.DataFrame, config: str) -> str | None:
    """The `compression=none` configuration to compare ``config`` against, if the sweep has one.

    Prefers the one trained the same way (same data, model, optimizer, strategy, lr), else
    the most accurate `none` configuration. ``table`` is :func:`group_configs` output.
    """
    candidates = table[(table["compression"] == BASELINE) & table["acc_mean"].notna()]
    if candidates.empty:
        return None
    row = table.loc[config]
    same = [c for c in [*GROUP_COLUMNS, "lr"] if c != "compression"]
    match = candidates[[all(_key(candidates.at[i, c]) == _key(row[c]) for c in same) for i in candidates.index]]
    return str((match if len(match) else candidates).index[0])
