"""The warnings a reader needs before trusting the answer, each found by one small check.

Every check reads the prepared runs, the per-configuration table and the recommendation, and
returns a :class:`ReportWarning` or ``None``; :data:`CHECKS` lists them, most important first
(the answer card shows the first that fires). Each states what it saw and what to do.

* :func:`near_baseline`: the recommended score is within a few points of the task's baseline.
* :func:`failed_trials`: a failed or pruned trial is missing from the comparison.
* :func:`unequal_budget`: the recommendation trained more epochs than what it is compared with.
* :func:`edge_of_range`: the best value of a training hyper-parameter is the smallest or largest tried.
* :func:`slower_than_float`: an int8 or pruned network is slower than float at batch 1.
* :func:`latency_spread`: the latency measurements spread too widely to rank networks by speed.
* :func:`small_training_data`: the validation carve left little training data.
* :func:`uncompressed_layers`: a method left a share of the network uncompressed (recurrent layers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from sweeper.report.families import UNCOMPRESSED
from sweeper.report.grouping import uncompressed_for, value_key
from sweeper.report.recommend import LATENCY_NOISE, Recommendation, counterpart
from sweeper.report.stats import score_label

__all__ = [
    "CHECKS",
    "EDGE_MIN_VALUES",
    "NEAR_BASELINE",
    "SMALL_TRAIN",
    "SPREAD_TOO_WIDE",
    "ReportWarning",
    "collect",
    "edge_of_range",
    "failed_trials",
    "latency_spread",
    "near_baseline",
    "slower_than_float",
    "small_training_data",
    "uncompressed_layers",
    "unequal_budget",
]

NEAR_BASELINE = 0.05  # a recommended score within 5 points (of a 0..1 score) of the task's baseline
EDGE_MIN_VALUES = 3  # a hyper-parameter tried at fewer values has no inside to its range
SPREAD_TOO_WIDE = 1.5  # a latency ratio whose 95 % interval spans more than this factor cannot rank
SMALL_TRAIN = 2000  # fewer training samples (after the validation carve) than this
SLOW_FAMILIES = ("quantization", "pruning")  # compressed to be smaller, expected (wrongly, often) to be faster
UNCOMPRESSED_SHARE = 0.05  # a method that left more of the weights than this uncompressed
_TRAINING_GROUPS = ("optimizer.", "strategy.")  # hyper-parameters whose best value should lie inside the range


@dataclass(frozen=True)
class ReportWarning:
    """One warning: ``kind`` names the check, ``title`` is a few words, ``text`` says what and what to do."""

    kind: str
    title: str
    text: str

    def markdown(self) -> str:
        """``**title**: text``, as the report lists it."""
        return f"**{self.title}**: {self.text}"


Check = Callable[[pd.DataFrame, pd.DataFrame, Recommendation], "ReportWarning | None"]


def near_baseline(runs: pd.DataFrame, table: pd.DataFrame, rec: Recommendation) -> ReportWarning | None:
    """The recommended configuration's test score is within :data:`NEAR_BASELINE` of the task's baseline."""
    if rec.best is None or "baseline_test_score" not in runs or runs["baseline_test_score"].isna().all():
        return None
    per_seed = runs.dropna(subset=["baseline_test_score"]).groupby("seed")["baseline_test_score"].first()
    baseline, score = float(per_seed.mean()), float(table.at[rec.best, "score_mean"])
    if score - baseline >= NEAR_BASELINE:
        return None
    names = runs["baseline"].dropna().unique() if "baseline" in runs else []
    name = f" ({names[0]})" if len(names) == 1 else ""
    return ReportWarning(
        "near_baseline",
        "Barely above the task's baseline",
        f"`{rec.best}` scores {100 * score:.1f} % test {score_label()}, {100 * (score - baseline):+.1f} points from "
        f"the task's baseline{name} at {100 * baseline:.1f} %: the networks hardly learned this task. Train longer, "
        "try a larger model or another learning rate before choosing a compression method.",
    )


def failed_trials(runs: pd.DataFrame, table: pd.DataFrame, rec: Recommendation) -> ReportWarning | None:
    """Some trials failed or were pruned: their configurations rest on fewer seeds, or are missing."""
    bad = runs[runs["outcome"] != "ok"]
    if bad.empty:
        return None
    counts = bad["outcome"].value_counts()
    what = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    configs = list(dict.fromkeys(bad["config"].astype(str)))
    missing = [c for c in configs if c not in table.index or pd.isna(table.at[c, "score_mean"])]
    named = ", ".join(f"`{c}`" for c in configs[:3]) + (f" and {len(configs) - 3} more" if len(configs) > 3 else "")
    gone = f"; {len(missing)} configuration(s) have no finished run and are not compared at all" if missing else ""
    return ReportWarning(
        "failed_trials",
        "Trials missing from the comparison",
        f"{len(bad)} of {len(runs)} runs did not finish ({what}): {named}. Their configurations rest on fewer "
        f"seeds{gone}; the reasons are listed under Failed and pruned runs.",
    )


def unequal_budget(runs: pd.DataFrame, table: pd.DataFrame, rec: Recommendation) -> ReportWarning | None:
    """The recommendation trained more epochs in all than the configuration it is compared with."""
    other = counterpart(table, rec)
    if rec.best is None or other is None:
        return None
    ours, theirs = table.at[rec.best, "total_epochs"], table.at[other, "total_epochs"]
    if pd.isna(ours) or pd.isna(theirs) or ours <= theirs:
        return None
    fix = (
        "`compare.equal_budget=true` trains `none` as long"
        if table.at[other, "compression"] == UNCOMPRESSED
        else "compare them at equal epochs"
    )
    return ReportWarning(
        "unequal_budget",
        "Unequal training budgets",
        f"`{rec.best}` trained {ours:.0f} epochs in all (fine-tuning and teacher included) against {theirs:.0f} "
        f"for `{other}`: part of its edge may be the extra training; {fix}.",
    )


def _numeric_values(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration, the training hyper-parameters that vary in the sweep, as numbers."""
    columns = ["lr"] if "lr" in runs else []
    columns += [
        c for c in runs.columns if c.startswith(_TRAINING_GROUPS) and c != "optimizer.lr" and not c.endswith("_target_")
    ]
    values = runs.groupby("config", sort=False)[columns].first() if columns else pd.DataFrame()
    numeric = values.apply(pd.to_numeric, errors="coerce")
    keep = [c for c in numeric if numeric[c].notna().sum() == values[c].notna().sum() and numeric[c].nunique() > 1]
    return numeric[keep]


def edge_of_range(runs: pd.DataFrame, table: pd.DataFrame, rec: Recommendation) -> ReportWarning | None:
    """The recommended configuration's value of a training hyper-parameter is the smallest or largest tried
    (among the configurations that differ from it in that value only; at least :data:`EDGE_MIN_VALUES`)."""
    if rec.best is None:
        return None
    values = _numeric_values(runs[runs["outcome"] == "ok"])
    if rec.best not in values.index:
        return None
    keys = values.map(value_key)
    found = []
    for column in values.columns:
        others = [c for c in values.columns if c != column]
        peers = values[(keys[others] == keys.loc[rec.best, others]).all(axis=1)] if others else values
        tried = sorted(peers[column].dropna().unique())
        value = values.at[rec.best, column]
        if len(tried) >= EDGE_MIN_VALUES and value in (tried[0], tried[-1]):
            side = "smallest" if value == tried[0] else "largest"
            name = "learning rate" if column == "lr" else f"`{column}`"
            found.append(
                f"the best {name} ({value:g}) is the {side} of the {len(tried)} tried ({tried[0]:g} to {tried[-1]:g})"
            )
    if not found:
        return None
    return ReportWarning(
        "edge_of_range",
        "Best value at the edge of the searched range",
        f"For `{rec.best}`, {'; '.join(found)}: a better value may lie beyond it. Extend the range past that end "
        "and run the sweep again.",
    )


def _slowdown(a: pd.Series, b: pd.Series) -> tuple[float, float, float] | None:
    """``a``'s batch-1 latency over ``b``'s with its interval from the latency round, when ``a`` is slower."""
    from sweeper.report.latency_round import ratio_interval

    ours, theirs = a.get("latency_rounds"), b.get("latency_rounds")
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs) >= 2 and ours != theirs:
        ratio, low, high = ratio_interval(ours, theirs)
        return (ratio, low, high) if math.isfinite(low) and low > 1 else None
    ratio = a["latency_ms"] / b["latency_ms"] if b["latency_ms"] > 0 else math.nan
    return (ratio, math.nan, math.nan) if ratio >= LATENCY_NOISE else None


def slower_than_float(runs: pd.DataFrame, table: pd.DataFrame, rec: Recommendation) -> ReportWarning | None:
    """An int8 (quantization) or pruned configuration runs slower at batch 1 than its uncompressed network."""
    items = []
    ranked = table[table["score_mean"].notna()]
    for config, row in ranked[ranked["family"].isin(SLOW_FAMILIES)].iterrows():
        reference = uncompressed_for(table, str(config))
        if reference is None:
            continue
        slow = _slowdown(row, table.loc[reference])
        if slow is not None:
            ratio, low, high = slow
            interval = f" [{low:.2f}, {high:.2f}]" if math.isfinite(low) else ""
            kind = ", simulated" if row["latency_kind"] == "simulated" else ""
            items.append(f"`{config}` {ratio:.1f}x slower{interval} than `{reference}`{kind}")
    if not items:
        return None
    return ReportWarning(
        "slower_than_float",
        "Compressed but slower",
        f"At batch 1 in this latency round, {'; '.join(items)}. Int8 and sparse weights often run slower than dense "
        "float32 on a CPU at batch 1 (smaller, not faster): look at the larger batch's column, or measure another "
        "runtime (`measure.runtimes=[torch,onnxruntime]`).",
    )


def latency_spread(runs: pd.DataFrame, table: pd.DataFrame, rec: Recommendation) -> ReportWarning | None:
    """The latency measurements vary too much to rank: a ratio's 95 % interval spans more than
    :data:`SPREAD_TOO_WIDE` (the latency round), or a trial's own timing spread as much (no round)."""
    from sweeper.report.latency_round import ratio_interval

    ranked = table[table["score_mean"].notna()]
    rounds = [r for r in ranked.get("latency_rounds", pd.Series(dtype=object)) if isinstance(r, list) and len(r) >= 2]
    widest, where = 1.0, ""
    if rounds:
        reference = rounds[0]
        for other in rounds[1:]:
            if len(other) == len(reference) and other != reference:
                _, low, high = ratio_interval(other, reference)
                widest = max(widest, high / low if low > 0 else math.inf)
        where = "the latency round's ratios (95 % interval over rounds) span up to"
    elif "latency_iqr_ms" in runs:
        ok = runs[(runs["outcome"] == "ok") & (runs["latency_ms"] > 0)]
        spread = (1 + ok["latency_iqr_ms"] / ok["latency_ms"]).max() if len(ok) else math.nan
        widest = float(spread) if pd.notna(spread) else 1.0
        where = "the trials' own timings (interquartile range over their median) span up to"
    if widest <= SPREAD_TOO_WIDE:
        return None
    return ReportWarning(
        "latency_spread",
        "Latency too noisy to rank",
        f"{where} {widest:.1f}x: the host was busy while timing. Rank by latency only where a ratio's interval is "
        "narrow, or run `python -m sweeper.report --latency-rounds 10` on an idle machine.",
    )


def small_training_data(runs: pd.DataFrame, table: pd.DataFrame, rec: Recommendation) -> ReportWarning | None:
    """Fewer than :data:`SMALL_TRAIN` training samples remained after the validation carve."""
    ok = runs[runs["outcome"] == "ok"]
    if "train_samples" not in ok or ok["train_samples"].isna().all() or ok["train_samples"].min() >= SMALL_TRAIN:
        return None
    return ReportWarning(
        "small_training_data",
        "Small training set",
        f"{int(ok['train_samples'].min()):,} training samples after the validation carve (fewer than "
        f"{SMALL_TRAIN:,}): on small data the carve itself costs {score_label()}; compare with published numbers "
        "only after training on every training sample, or lower `data.val_fraction`.",
    )


def uncompressed_layers(runs: pd.DataFrame, table: pd.DataFrame, rec: Recommendation) -> ReportWarning | None:
    """A method left more than :data:`UNCOMPRESSED_SHARE` of its network's weights uncompressed."""
    if "uncompressed_share" not in runs:
        return None
    ok = runs[(runs["outcome"] == "ok") & (runs["uncompressed_share"] > UNCOMPRESSED_SHARE)]
    items = []
    for label, group in ok.groupby("config", sort=False):
        kinds = group["uncompressed_layers"].dropna().iloc[0] if "uncompressed_layers" in group else "recurrent"
        items.append(
            f"`{label}` left {100 * group['uncompressed_share'].max():.0f} % of its network's weights uncompressed "
            f"({kinds} layers)"
        )
    if not items:
        return None
    return ReportWarning(
        "uncompressed_layers",
        "Partly compressed",
        "; ".join(items) + ": no method here compresses recurrent weights, so its size and latency are those of a "
        "partly compressed network.",
    )


CHECKS: tuple[Check, ...] = (
    near_baseline,
    failed_trials,
    unequal_budget,
    edge_of_range,
    slower_than_float,
    latency_spread,
    small_training_data,
    uncompressed_layers,
)


def collect(runs: pd.DataFrame, table: pd.DataFrame, rec: Recommendation) -> list[ReportWarning]:
    """Every warning that applies, in the order of :data:`CHECKS` (the most important first)."""
    found = (check(runs, table, rec) for check in CHECKS)
    return [w for w in found if w is not None]
