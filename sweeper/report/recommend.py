"""The decision: the best configuration within the budgets (by validation score), the runner-up, and why.

Budgets apply to the means over seeds: ``size_bytes`` (KiB = 1024 bytes), ``latency_ms``
(per sample at batch 1) and the validation score. Among the feasible configurations the one
with the best mean validation score is chosen; its test score is reported. A difference
that a paired (or Welch) t-test cannot support after Holm's correction over the
recommendation's comparisons is never a win (:mod:`sweeper.report.stats`); one that was not
tested (a single seed) is said to be untested, never a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from sweeper.report.grouping import compare_configs, uncompressed_for, with_score_names
from sweeper.report.stats import Comparison, decide, score_label

__all__ = ["LATENCY_NOISE", "Budget", "Recommendation", "compare", "counterpart", "latency_words", "recommend"]

LATENCY_NOISE = 1.25  # latency ratios below this are within timing noise on a shared CPU: no advantage


@dataclass(frozen=True)
class Budget:
    """Limits a recommended configuration must meet; ``None`` means no limit."""

    max_size_kb: float | None = None
    max_latency_ms: float | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        for flag, value, allowed in (
            ("--max-size-kb", self.max_size_kb, "a number > 0 (KiB)"),
            ("--max-latency-ms", self.max_latency_ms, "a number > 0 (ms per sample at batch 1)"),
            ("--min-score", self.min_score, "a number in [0, 1] (a fraction: 0.9 for 90 %)"),
        ):
            if value is None:
                continue
            number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
            ok = math.isfinite(number) and (0 <= number <= 1 if flag == "--min-score" else number > 0)
            if not ok:
                shown = f"{value:g}" if isinstance(value, float) else value
                raise ValueError(f"{flag}={shown}: must be {allowed}")

    def describe(self) -> str:
        """The budgets in words, e.g. ``size <= 100 KiB, latency <= 0.5 ms``."""
        parts = []
        if self.max_size_kb is not None:
            parts.append(f"size <= {self.max_size_kb:g} KiB")
        if self.max_latency_ms is not None:
            parts.append(f"latency at batch 1 <= {self.max_latency_ms:g} ms")
        if self.min_score is not None:
            parts.append(f"validation {score_label()} >= {100 * self.min_score:g} %")
        return ", ".join(parts) or "no budget"

    def excess(self, row: pd.Series) -> dict[str, tuple[float, float]]:
        """Budgets ``row`` violates: ``{flag: (limit, value needed)}``."""
        over = {}
        size_kb = row["size_bytes"] / 1024
        if self.max_size_kb is not None and size_kb > self.max_size_kb:
            over["--max-size-kb"] = (self.max_size_kb, size_kb)
        if self.max_latency_ms is not None and row["latency_ms"] > self.max_latency_ms:
            over["--max-latency-ms"] = (self.max_latency_ms, row["latency_ms"])
        # a choice, so made on validation like every other choice; the test accuracy is reported
        if self.min_score is not None and row["val_mean"] < self.min_score:
            over["--min-score"] = (self.min_score, row["val_mean"])
        return over


@dataclass
class Recommendation:
    """What to choose under a budget and why; ``best`` is None when nothing is feasible.

    ``tie``: the runner-up was tested against the best and the seeds cannot tell them apart
    (False when untested: a single seed is no evidence either way). ``comparisons``: the
    Holm-adjusted comparisons behind the sentence, ``{(a, b): a against b}``.
    """

    budget: Budget
    best: str | None
    runner_up: str | None
    tie: bool
    feasible: list[str]
    sentence: str
    closest: str | None = None
    relax: dict[str, tuple[float, float]] = field(default_factory=dict)
    comparisons: dict[tuple[str, str], Comparison] = field(default_factory=dict)


def _ratio(value: float, reference: float, *, above: str, below: str, same: str) -> str:
    """``1.7x slower``-style wording of ``value / reference``; within 5 % reads as ``same``."""
    if not (reference > 0 and value > 0):
        return ""
    ratio = value / reference
    if ratio >= 1.05:
        return f"{ratio:.1f}x {above}"
    if ratio <= 1 / 1.05:
        return f"{1 / ratio:.1f}x {below}"
    return same


def compare(table: pd.DataFrame, config: str, other: str, comparison: Comparison | None = None) -> str:
    """``config`` against ``other`` in words: size, accuracy (with its test), latency, training budget.

    ``comparison``: the accuracy comparison, Holm-adjusted by the caller (default: unadjusted).
    Example: ``3.9x smaller, accuracy -0.2 pp [-1.1, +0.7], no detectable difference with
    3 seeds (about 40 needed; paired p = 0.4, Holm), P(A>B) = 0.33, 1.7x slower at batch 1``.
    """
    a, b = table.loc[config], table.loc[other]
    comparison = comparison or compare_configs(table, config, other)
    parts = [
        size_words(a, b),
        f"{score_label()} {comparison.words()}",
        latency_words(a, b) + " at batch 1" + (" (simulated)" if a["latency_kind"] == "simulated" else ""),
        _budget(a, b),
    ]
    return ", ".join(p for p in parts if p)


def size_words(a: pd.Series, b: pd.Series) -> str:
    """``3.9x smaller`` (``a``'s artifact against ``b``'s), ``same size`` within 5 %."""
    return _ratio(a["size_bytes"], b["size_bytes"], above="larger", below="smaller", same="same size")


def latency_words(a: pd.Series, b: pd.Series) -> str:
    """``1.6x faster [1.5, 1.7]`` from the interleaved round (ratio of per-round times, 95 % interval);
    ``as fast, within measurement`` when that interval holds 1; the trials' own medians otherwise."""
    from sweeper.report.latency_round import ratio_interval

    ours, theirs = a.get("latency_rounds"), b.get("latency_rounds")
    if not (isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs) >= 2):
        return _ratio(a["latency_ms"], b["latency_ms"], above="slower", below="faster", same="as fast")
    if list(ours) == list(theirs):  # one network, timed once: nothing to compare
        return "as fast (the same network)"
    ratio, low, high = ratio_interval(ours, theirs)
    if not math.isfinite(ratio):
        return ""
    if low <= 1 <= high:
        return f"as fast, within measurement ({low:.2f}-{high:.2f}x)"
    if ratio > 1:
        return f"{ratio:.1f}x slower [{low:.2f}, {high:.2f}]"
    return f"{1 / ratio:.1f}x faster [{1 / high:.2f}, {1 / low:.2f}]"


def _budget(a: pd.Series, b: pd.Series) -> str:
    """``trained 8 epochs in all against 3`` when ``a`` had more training than ``b``, else ``""``."""
    ours, theirs = a.get("total_epochs", math.nan), b.get("total_epochs", math.nan)
    if pd.isna(ours) or pd.isna(theirs) or ours <= theirs:
        return ""
    return f"trained {ours:.0f} epochs in all (incl. fine-tuning, teacher) against {theirs:.0f}: more training"


def _describe(row: pd.Series) -> str:
    if pd.isna(row["score_low"]) or row["n_seeds"] < 2:
        spread = " (1 seed: no interval)"
    else:
        seeds = f"{int(row['n_seeds'])} seeds"
        spread = f" (95 % CI {100 * row['score_low']:.1f}–{100 * row['score_high']:.1f}, {seeds})"
    return (
        f"test {score_label()} {100 * row['score_mean']:.1f} %{spread}, validation {100 * row['val_mean']:.1f} %, "
        f"{row['size_bytes'] / 1024:.1f} KiB, "
        f"{row['latency_ms']:.3f} ms per sample at batch 1 ({row['latency_kind']})"
    )


def _why(table: pd.DataFrame, best: str, runner_up: str | None) -> tuple[str, dict[tuple[str, str], Comparison]]:
    row = table.loc[best]
    text = f"Choose **{best}**: the best mean validation {score_label()} within the budget; {_describe(row)}."
    uncompressed = uncompressed_for(table, best)
    pairs = [(best, uncompressed)] if uncompressed is not None and uncompressed != best else []
    pairs += [(runner_up, best)] if runner_up is not None else []
    decided = dict(zip(pairs, decide([compare_configs(table, a, b) for a, b in pairs]), strict=True))  # Holm over these
    if uncompressed is not None and uncompressed != best:
        text += f" Against {uncompressed} (uncompressed): {compare(table, best, uncompressed, decided[best, uncompressed])}."
    if runner_up is None:
        return text + " It is the only configuration within the budget.", decided
    other = table.loc[runner_up]
    versus = decided[runner_up, best]
    text += f" Runner-up **{runner_up}**: {compare(table, runner_up, best, versus)}."
    reasons = [
        name
        for name, better in (
            ("size", other["size_bytes"] * 1.05 <= row["size_bytes"]),
            ("latency", other["latency_ms"] * LATENCY_NOISE <= row["latency_ms"]),
        )
        if better
    ]
    if not versus.significant:
        why = (
            "the seeds cannot tell the two apart"
            if versus.tie
            else "it was not tested (one seed each)"
            if not versus.identical
            else "the difference is the same on every seed but was not tested"
        )
        text += f" {best} leads on the mean {score_label()} only: {why}"
        text += f"; choose {runner_up} if {' or '.join(reasons)} matters." if reasons else "."
    elif reasons:
        text += f" Choose {runner_up} if {' or '.join(reasons)} matters more than {score_label()}."
    return text, decided


def recommend(table: pd.DataFrame, budget: Budget) -> Recommendation:
    """The best configuration within ``budget`` by mean validation score, the runner-up and why.

    When nothing is feasible: the closest configuration (smallest total relative excess)
    and, for each budget it breaks, the value that would admit it.

    Args:
        table: :func:`sweeper.report.grouping.group_configs` output.
        budget: the limits.
    """
    table = with_score_names(table)
    ranked = table[table["score_mean"].notna()].sort_values(["val_mean", "size_bytes"], ascending=[False, True])
    if ranked.empty:
        return Recommendation(budget, None, None, False, [], "No configuration finished; nothing to recommend.")
    feasible = [str(c) for c in ranked.index if not budget.excess(ranked.loc[c])]
    if feasible:
        best, runner_up = feasible[0], (feasible[1] if len(feasible) > 1 else None)
        sentence, decided = _why(ranked, best, runner_up)
        tie = runner_up is not None and decided[runner_up, best].tie
        return Recommendation(budget, best, runner_up, tie, feasible, sentence, comparisons=decided)

    def distance(config: str) -> float:
        return sum(
            abs(need - limit) / limit if limit else abs(need)
            for limit, need in budget.excess(ranked.loc[config]).values()
        )

    closest = min(ranked.index, key=distance)
    relax = budget.excess(ranked.loc[closest])
    changes = "; ".join(f"{flag} from {limit:g} to {_needed(flag, value)}" for flag, (limit, value) in relax.items())
    sentence = (
        f"No configuration meets the budget ({budget.describe()}). The closest is **{closest}** "
        f"({_describe(ranked.loc[closest])}); to admit it, relax {changes}."
    )
    return Recommendation(budget, None, None, False, [], sentence, closest=str(closest), relax=relax)


def counterpart(table: pd.DataFrame, rec: Recommendation) -> str | None:
    """What the answer compares the choice with: the uncompressed `none` like it, else the runner-up."""
    if rec.best is None:
        return None
    uncompressed = uncompressed_for(table, rec.best)
    if uncompressed is not None and uncompressed != rec.best:
        return uncompressed
    return rec.runner_up


def _needed(flag: str, value: float) -> str:
    """The budget value that admits ``value``, rounded outward so it really does."""
    if flag == "--min-score":
        return f"{math.floor(value * 1000) / 1000:g}"
    return f"{math.ceil(value * 1000) / 1000:g}"
