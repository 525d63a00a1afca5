"""From trials to configurations: which runs count, what a configuration is, and its stats over seeds.

A *configuration* is every config value that varies in the sweep except ``seed``; the
runs of one configuration differ only by seed, and the report shows their mean, its 95 %
t-interval and spread. Configurations are ordered (and chosen) by the mean validation
score (:data:`sweeper.report.stats.SELECT`); the test score is what is reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from sweeper.metrics import GROUPS
from sweeper.report.families import UNCOMPRESSED, UNKNOWN
from sweeper.report.stats import SCORE, SELECT, Comparison, compare_scores, mean_interval

__all__ = [
    "FIXED_TAG",
    "REQUIRED_METRICS",
    "STRENGTH_SUFFIXES",
    "classify",
    "compare_configs",
    "config_labels",
    "differing_keys",
    "group_configs",
    "network_keys",
    "split_sweeps",
    "strength_columns",
    "total_epochs",
    "uncompressed_for",
    "value_key",
    "with_score_names",
]

REQUIRED_METRICS = (SCORE, "size_bytes", "latency_ms")
STRENGTH_SUFFIXES = (".amount", ".bits")  # compression strengths (a pipeline's stages' too) a sweep may vary
FIXED_TAG = "fixed_overrides"  # the command line's overrides that are not swept, as a trial logs them
_IGNORED_PREFIXES = ("tracking.", "hydra.", "layers.")  # layers.*: what compression=mixed chose per layer, per seed
_MEANS = [
    "size_bytes",
    "compression_ratio",
    "latency_ms",
    "latency_ms_batch",
    "latency_ms_onnxruntime",  # measure.runtimes=[torch, onnxruntime]
    "latency_ms_batch_onnxruntime",
    "test_score_onnxruntime",
    "size_bytes_onnxruntime",
    "train_seconds",
    "epochs_run",
    "total_epochs",
    "steps",
    "train_samples",
    "val_samples",
    "test_samples",
]


OLD_NAMES = {  # columns of the per-configuration tables before they were named after the score
    "acc_mean": "score_mean",
    "acc_low": "score_low",
    "acc_high": "score_high",
    "acc_std": "score_std",
    "accuracy_delta_pp": "score_delta_pp",
    "acc_a": "score_a",
    "acc_b": "score_b",
}


def with_score_names(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the former ``acc_*`` column names (an older CSV or notebook) read as ``score_*``.

    Example:
        >>> list(with_score_names(pd.DataFrame({"acc_mean": [0.9], "n_seeds": [3]})).columns)
        ['score_mean', 'n_seeds']
    """
    old = {name: new for name, new in OLD_NAMES.items() if name in frame.columns and new not in frame.columns}
    return frame.rename(columns=old) if old else frame


def classify(runs: pd.DataFrame, required: Sequence[str] = REQUIRED_METRICS) -> pd.DataFrame:
    """``outcome`` (``ok``, ``failed`` or ``pruned``) and ``reason`` of each run.

    A run is ``ok`` when it FINISHED with every metric in ``required`` (:data:`REQUIRED_METRICS`);
    ``pruned`` when an Optuna pruner stopped it (tag ``optuna_state=PRUNED``); else ``failed``.
    """
    state = runs.get("optuna_state", pd.Series(index=runs.index, dtype=object)).fillna("").astype(str)
    pruned = state.str.upper() == "PRUNED"
    outcome = pd.Series("ok", index=runs.index, dtype=object)
    reason = runs.get("failure_reason", pd.Series(index=runs.index, dtype=object)).fillna("").astype(str)
    for i in runs.index:
        missing = [m for m in required if m not in runs or pd.isna(runs.at[i, m])]
        if pruned[i]:
            outcome[i], reason[i] = "pruned", reason[i] or "pruned by the Optuna pruner"
        elif runs.at[i, "status"] != "FINISHED":
            outcome[i], reason[i] = "failed", reason[i] or f"status {runs.at[i, 'status']}"
        elif missing:
            outcome[i], reason[i] = "failed", f"missing metric(s): {', '.join(missing)}{_untimed(runs, i, missing)}"
    return pd.DataFrame({"outcome": outcome, "reason": reason})


def _untimed(runs: pd.DataFrame, i: object, missing: list[str]) -> str:
    """Why a run lacks its latency, when its trial left the timing to the report's round."""
    if "latency_ms" in missing and "latency_measured" in runs and runs.at[i, "latency_measured"] == "not timed":
        return " (the trial left it to the report's latency round, which could not reload its artifact or was off)"
    return ""


def value_key(value: object) -> str:
    """A config value as a label reads it (floats to 4 significant digits; missing: ``""``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _exact_key(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(value)


def _candidate_columns(runs: pd.DataFrame) -> list[str]:
    dotted = sorted(c for c in runs.columns if "." in c and not c.startswith(_IGNORED_PREFIXES))
    return [c for c in GROUPS if c in runs] + dotted


def config_labels(runs: pd.DataFrame) -> pd.Series:
    """A readable label per run naming its configuration from what varies, e.g. ``optimizer=adam``.

    Group choices that vary are named; a dotted config value is named when it varies
    among runs with the same group choices (an override such as ``optimizer.lr=0.01``).
    Runs that differ only by seed get the same label.
    """
    keys = pd.DataFrame({c: runs[c].map(value_key) for c in _candidate_columns(runs)}, index=runs.index)
    groups = [c for c in GROUPS if c in keys]
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


def total_epochs(runs: pd.DataFrame) -> pd.Series:
    """Every epoch a run's result cost: ``epochs_run`` + fine-tuning epochs + teacher epochs.

    Fine-tuning: ``compression.finetune_epochs`` and a pipeline's
    ``compression.stages.<stage>.finetune_epochs``; the teacher: the ``teacher_epochs`` metric
    of a distillation, else its ``compression[.stages.<stage>].teacher_epochs`` parameter
    (a cached teacher counts too: its training is part of the result).

    Example:
        >>> frame = pd.DataFrame({"epochs_run": [3, 3], "compression.finetune_epochs": [None, 5]})
        >>> total_epochs(frame).tolist()
        [3.0, 8.0]
    """

    def summed(suffix: str) -> pd.Series:
        columns = [c for c in runs.columns if c.startswith("compression.") and c.endswith(suffix)]
        if not columns:
            return pd.Series(0.0, index=runs.index)
        return runs[columns].apply(pd.to_numeric, errors="coerce").fillna(0.0).sum(axis=1)

    teacher = summed(".teacher_epochs")
    if "teacher_epochs" in runs:
        teacher = pd.to_numeric(runs["teacher_epochs"], errors="coerce").fillna(teacher)
    epochs = pd.to_numeric(runs["epochs_run"], errors="coerce") if "epochs_run" in runs else math.nan
    return epochs + summed(".finetune_epochs") + teacher


def strength_columns(frame: pd.DataFrame) -> list[str]:
    """The compression-strength config keys of ``frame`` (``compression.amount``, ``compression.bits``, ...)."""
    return sorted(c for c in frame.columns if c.startswith("compression.") and c.endswith(STRENGTH_SUFFIXES))


def _scores(frame: pd.DataFrame, metric: str) -> dict[object, float]:
    """``{seed: metric}`` of finished runs (a repeated seed keeps its first run)."""
    if metric not in frame:
        return {}
    present = frame[frame[metric].notna()]
    seeds = present["seed"] if "seed" in present else pd.Series(range(len(present)), index=present.index)
    scores: dict[object, float] = {}
    for seed, value in zip(seeds, present[metric].astype(float), strict=True):
        scores.setdefault(seed, float(value))
    return scores


def group_configs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration, best mean validation score first.

    Args:
        runs: :func:`sweeper.tracking.results.load_runs` output with ``config``, ``outcome`` columns
            added (see :func:`config_labels` and :func:`classify`).

    Returns:
        Index ``config``; columns ``rank`` (1 = best mean validation score; NaN when no run
        finished), ``family``, the group choices, ``lr``, ``score_mean`` (mean test score over
        seeds), ``score_low``, ``score_high`` (its 95 % t-interval, clipped to [0, 1]; NaN for one seed), ``score_std``
        (sample std; NaN for one seed), ``scores`` (``{seed: test
        score}``), ``val_mean`` (mean validation score, what ranks: the test score where a run
        has none), ``n_seeds`` (distinct seeds among the finished runs: an Optuna search that samples a
        configuration again with the same seed adds no spread), ``n_failed``, ``n_pruned``, ``latency_kind``
        and the means of ``size_bytes``, ``compression_ratio``, ``latency_ms``,
        ``latency_ms_batch``, ``train_seconds``, ``epochs_run``, ``total_epochs``
        (:func:`total_epochs`), ``steps``, the split sizes and the compression strengths
        (:func:`strength_columns`). The latencies are the median
        over all finished runs of the same deployed network (`network_keys`), so
        configurations that differ only in how the network was trained share one latency.
    """
    pooled = _pooled_latency(runs)
    runs = runs.assign(**{metric: pooled[metric] for metric in pooled}, total_epochs=total_epochs(runs))
    rows = []
    for label, group in runs.groupby("config", sort=False):
        ok = group[group["outcome"] == "ok"]
        row: dict[str, object] = {"config": label}
        for column in [*GROUPS, "lr", *strength_columns(runs)]:
            row[column] = _first(group[column]) if column in group else None
        row["family"] = (_first(group["family"]) if "family" in group else None) or UNKNOWN
        scores = _scores(ok, SCORE)
        values = list(scores.values())  # one per distinct seed: a repeated seed is no new evidence
        row["scores"] = scores
        mean, low, high = mean_interval(values)
        row["score_mean"], row["score_low"], row["score_high"] = mean, max(low, 0.0), min(high, 1.0)  # a fraction
        row["score_std"] = float(pd.Series(values).std(ddof=1)) if len(values) > 1 else math.nan
        selection = ok[SELECT].astype(float).fillna(ok[SCORE].astype(float)) if SELECT in ok else ok[SCORE]
        row["val_mean"] = float(selection.mean()) if len(ok) else math.nan
        row["n_seeds"] = len(scores)
        row["n_failed"] = int((group["outcome"] == "failed").sum())
        row["n_pruned"] = int((group["outcome"] == "pruned").sum())
        row["latency_kind"] = _first(ok["latency_kind"]) if "latency_kind" in ok else None
        for column in ("latency_rounds", "latency_rounds_onnxruntime", "latency_source"):  # the end-of-sweep round's
            row[column] = _first(ok[column]) if column in ok else None
        for metric in _MEANS:
            row[metric] = float(ok[metric].astype(float).mean()) if metric in ok and len(ok) else math.nan
        rows.append(row)
    table = pd.DataFrame(rows).set_index("config")
    table = table.sort_values(["val_mean", "size_bytes"], ascending=[False, True], na_position="last")
    ranked = table["score_mean"].notna()
    table["rank"] = pd.Series(range(1, int(ranked.sum()) + 1), index=table.index[ranked])
    return table


def compare_configs(table: pd.DataFrame, config: str, other: str) -> Comparison:
    """``config`` against ``other`` on the test score over seeds (paired on common seeds, else Welch).

    ``table`` is :func:`group_configs` output. Not Holm-adjusted: see :func:`sweeper.report.stats.decide`.
    """
    return compare_scores(table.at[config, "scores"], table.at[other, "scores"])


def uncompressed_for(table: pd.DataFrame, config: str) -> str | None:
    """The uncompressed (`compression=none`) configuration to compare ``config`` against, if the sweep has one.

    Prefers the one trained the same way (same data, model, optimizer, strategy, lr), else
    the `none` configuration with the best validation score. ``table`` is :func:`group_configs` output.
    """
    candidates = table[(table["compression"] == UNCOMPRESSED) & table["score_mean"].notna()]
    candidates = candidates.sort_values("val_mean", ascending=False)
    if candidates.empty:
        return None
    row = table.loc[config]
    same = [c for c in [*GROUPS, "lr"] if c != "compression"]
    match = candidates[
        [all(value_key(candidates.at[i, c]) == value_key(row[c]) for c in same) for i in candidates.index]
    ]
    return str((match if len(match) else candidates).index[0])


def _fixed_key(runs: pd.DataFrame) -> pd.Series:
    if FIXED_TAG not in runs:
        return pd.Series("", index=runs.index)
    return runs[FIXED_TAG].fillna("").astype(str)


def split_sweeps(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The configuration spaces of one sweep id: runs made under the same fixed overrides.

    A sweep dir run again with other fixed overrides (``strategy.epochs=200``, then
    ``strategy.epochs=20``) holds two sweeps; trials log their command line's fixed
    overrides as the tag :data:`FIXED_TAG`. Runs without it (older runs) form one sweep.

    Returns:
        ``[(description, runs), ...]``, the most recent first; the description names the
        fixed overrides (or the config keys that differ between the parts), ``""`` when the
        runs form a single sweep.

    Example:
        >>> runs = pd.DataFrame({"start_time": [1, 2, 3], FIXED_TAG: ["a=1", "a=1", "a=2"]})
        >>> [(name, len(part)) for name, part in split_sweeps(runs)]
        [('a=2', 1), ('a=1', 2)]
    """
    key = _fixed_key(runs)
    if key.nunique() <= 1:
        return [("", runs)]
    latest = (
        runs.groupby(key)["start_time"].max().sort_values(ascending=False)
        if "start_time" in runs
        else (pd.Series(0, index=key.unique()))
    )
    return [(str(value) or "(no fixed overrides)", runs[key == value]) for value in latest.index]


def differing_keys(parts: list[pd.DataFrame]) -> list[str]:
    """Config keys constant within each part but not the same in all: what tells the parts apart."""
    if len(parts) < 2:
        return []
    columns = [c for c in _candidate_columns(parts[0]) if all(c in p for p in parts)]
    differing = []
    for column in columns:
        values = [set(p[column].map(value_key)) for p in parts]
        if all(len(v) == 1 for v in values) and len(set().union(*values)) > 1:
            differing.append(column)
    return differing
