"""The report's statistics over seeds: intervals of a mean, comparisons of two configurations, Holm.

* :func:`mean_interval`: the 95 % Student-t interval of a mean over seeds (``scipy.stats.t``).
* :func:`compare_scores`: the difference of two configurations' means, **paired** over their
  common seeds (``scipy.stats.ttest_rel``) when they share every seed, Welch's t-test
  (``scipy.stats.ttest_ind(equal_var=False)``) otherwise, with the 95 % interval of the
  difference, the probability of improvement P(A > B) over seeds (Bouthillier et al. 2021)
  and the number of seeds a test at 80 % power would need to tell them apart.
* :func:`holm`: Holm's (1979) step-down adjustment of the p-values of one table.
* :func:`decide`: the comparisons of one table, Holm-adjusted: each significant or not (or untested).

The metric names live here (:data:`SCORE`, :data:`SELECT`), so the report reads one place.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

__all__ = [
    "LEVEL",
    "SCORE",
    "SELECT",
    "Comparison",
    "compare_scores",
    "decide",
    "holm",
    "mean_interval",
    "prob_improvement",
    "score_label",
    "score_title",
    "scored_as",
    "seeds_needed",
]

SCORE = "test_score"  # what the report reports, once, for what was selected: the task's metric
SELECT = "val_score"  # what every choice (best lr, best of a family, the recommendation) is made on
_SCORE_LABEL: ContextVar[str] = ContextVar("score_label", default="accuracy")
LEVEL = 0.95  # the confidence level of every interval and test (alpha = 0.05)
POWER = 0.8  # the power the seeds-needed estimate aims at
NO_SPREAD = 1e-9  # a spread of scores (fractions) below this is rounding, not variation: no test


def score_label() -> str:
    """How the report being written names its score: the task's metric (``accuracy``, ``NDCG@10``)."""
    return _SCORE_LABEL.get()


def score_title() -> str:
    """:func:`score_label` at the start of a title (``Accuracy``, ``NDCG@10``)."""
    label = score_label()
    return label[:1].upper() + label[1:]


@contextmanager
def scored_as(label: str) -> Iterator[None]:
    """Within the block, the report's texts name the score ``label``."""
    token = _SCORE_LABEL.set(label)
    try:
        yield
    finally:
        _SCORE_LABEL.reset(token)


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """The mean of ``values`` and its Student-t confidence interval ``(mean, low, high)``.

    One value (or none) has no interval: ``low`` and ``high`` are NaN. Zero spread gives a
    zero-width interval.

    Example:
        >>> [round(v, 4) for v in mean_interval([0.90, 0.91, 0.92])]
        [0.91, 0.8852, 0.9348]
        >>> mean_interval([0.9])[1:]
        (nan, nan)
    """
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(array.mean())
    if array.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size))
    return mean, mean - half, mean + half


def prob_improvement(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, paired: bool) -> float:
    """P(A > B) over seeds: the share of seed pairs where A beats B, ties counting one half.

    Paired: the pairs are the common seeds (same split and init); unpaired: every pair of a
    run of A with a run of B (Bouthillier et al. 2021).

    Example:
        >>> prob_improvement([0.9, 0.8], [0.85, 0.8], paired=True), prob_improvement([1, 2], [2, 0], paired=False)
        (0.75, 0.625)
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not x.size or not y.size:
        return math.nan
    diff = x - y if paired else (x[:, None] - y[None, :]).ravel()
    return float(np.mean(np.where(diff > 0, 1.0, np.where(diff == 0, 0.5, 0.0))))


def seeds_needed(delta: float, sd: float, *, paired: bool, level: float = LEVEL, power: float = POWER) -> float:
    """Seeds per configuration for a two-sided test at ``level`` to detect ``delta`` with ``power``.

    The normal approximation ``n = (z_{1-alpha/2} + z_power)^2 sd^2 / delta^2`` paired (``sd``:
    of the per-seed differences), twice that unpaired (``sd``: of one configuration's
    scores), refined with Student-t quantiles: the smallest ``n`` that satisfies the same
    formula with ``t`` quantiles at the test's degrees of freedom (``n - 1`` paired,
    ``2n - 2`` unpaired), which the normal one underestimates at few seeds. NaN when it
    cannot be told (no spread measured, or no difference).

    Example:
        >>> seeds_needed(0.01, 0.01, paired=False), seeds_needed(0.01, 0.01, paired=True)
        (17, 10)
    """
    if not (math.isfinite(delta) and math.isfinite(sd)) or delta == 0 or sd == 0:
        return math.nan
    factor = (1 if paired else 2) * sd * sd / (delta * delta)

    def enough(n: int) -> bool:
        dof = n - 1 if paired else 2 * n - 2
        t = stats.t.ppf(0.5 + level / 2, dof) + stats.t.ppf(power, dof)
        return n >= factor * t * t

    z = stats.norm.ppf(0.5 + level / 2) + stats.norm.ppf(power)
    n = max(2, math.ceil(factor * z * z))
    while not enough(n) and n < 10**6:
        n += 1
    return n


@dataclass(frozen=True)
class Comparison:
    """A against B over seeds; differences are A - B of the mean score.

    ``p`` is the raw two-sided p-value, ``p_holm`` the Holm-adjusted one within its table
    (equal to ``p`` until :func:`decide` adjusts it). Three honest edges have no p-value (NaN):
    a single seed on a side (nothing to test), and a difference with no spread at all
    (``identical``: the same difference on every seed, or every score the same on each side), which
    is stated as it is rather than turned into a p-value.
    """

    delta: float
    low: float
    high: float
    p: float
    paired: bool
    p_improve: float
    n_a: int
    n_b: int
    needed: float
    p_holm: float = math.nan
    identical: bool = False

    @property
    def testable(self) -> bool:
        """Whether a test was run (>= 2 seeds per side, or >= 2 common seeds paired, and some spread)."""
        return math.isfinite(self.p)

    @property
    def significant(self) -> bool:
        """The test tells A from B at :data:`LEVEL` after Holm's adjustment."""
        p = self.p_holm if math.isfinite(self.p_holm) else self.p
        return math.isfinite(p) and p < 1 - LEVEL

    @property
    def tie(self) -> bool:
        """Tested and not significant: the seeds cannot tell A from B. Never true without a test."""
        return self.testable and not self.significant

    @property
    def seeds(self) -> int:
        """The seeds behind the comparison (the smaller side)."""
        return min(self.n_a, self.n_b)

    def _seeds(self) -> str:
        return f"{self.seeds} seed{'s' if self.seeds != 1 else ''}"

    def certainty(self) -> str:
        """How sure the difference is, in plain words (no numbers but the seeds).

        Example:
            >>> Comparison(0.004, -0.02, 0.028, 0.6, True, 0.67, 3, 3, 120).certainty()
            'no detectable difference with 3 seeds; about 120 seeds would tell'
        """
        if self.identical:
            return f"identical across seeds ({self._seeds()}: the same difference on each, so no test)"
        if not self.testable:
            return "single run: no evidence either way (run seed=0,1,2 to test it)"
        if self.significant:
            return f"clearly {'better' if self.delta > 0 else 'worse'} ({self._seeds()}, a test at 5 %)"
        needed = f"; about {int(self.needed)} seeds would tell" if math.isfinite(self.needed) else ""
        return f"no detectable difference with {self._seeds()}{needed}"

    def difference(self) -> str:
        """A - B in points with its 95 % interval when tested: ``+0.4 pp [-2.0, +2.8]``, else ``+7.0 pp``."""
        text = f"{100 * self.delta:+.1f} pp"
        return text + (f" [{100 * self.low:+.1f}, {100 * self.high:+.1f}]" if self.testable else "")

    def flipped(self) -> Comparison:
        """The same comparison read as B against A."""
        return replace(
            self,
            delta=-self.delta,
            low=-self.high,
            high=-self.low,
            p_improve=1 - self.p_improve,
            n_a=self.n_b,
            n_b=self.n_a,
        )

    def short(self) -> str:
        """A table cell: the difference (pp, its interval when tested) and the verdict in a few words.

        Example:
            >>> Comparison(-0.07, math.nan, math.nan, math.nan, False, 0.0, 1, 1, math.nan).short()
            '-7.0 pp, single run: untested'
        """
        if self.identical:
            return f"{self.difference()}, identical across seeds"
        if not self.testable:
            return f"{self.difference()}, single run: untested"
        return f"{self.difference()}, {'significant' if self.significant else 'no detectable difference'}"

    def words(self) -> str:
        """The difference (A - B, pp) with its 95 % interval, the verdict, p and P(A>B), in words.

        Example:
            >>> Comparison(0.004, -0.02, 0.028, 0.6, True, 0.67, 3, 3, 120).words()
            '+0.4 pp [-2.0, +2.8], no detectable difference with 3 seeds (about 120 needed; paired p = 0.6), P(A>B) = 0.67'
        """
        difference = self.difference()
        if self.identical:
            return f"{difference} on each of {self._seeds()}: identical across seeds (no spread, so no test)"
        if not self.testable:
            return f"{difference}, single run each: no evidence either way (one seed cannot tell noise from effect)"
        p = self.p_holm if math.isfinite(self.p_holm) else self.p
        test = (
            f"{'paired' if self.paired else 'Welch'} p {'< 0.001' if p < 0.001 else f'= {p:.2g}'}"
            f"{', Holm' if math.isfinite(self.p_holm) else ''}"
        )
        if self.significant:
            verdict = f"significant ({test})"
        else:
            needed = f"about {int(self.needed)} needed; " if math.isfinite(self.needed) else ""
            verdict = f"no detectable difference with {self._seeds()} ({needed}{test})"
        return f"{difference}, {verdict}, P(A>B) = {self.p_improve:.2f}"


def compare_scores(a: Mapping[object, float], b: Mapping[object, float], level: float = LEVEL) -> Comparison:
    """Compare two configurations from their scores per seed (``{seed: score}``).

    Paired when both have the same seeds (at least two); Welch's unequal-variance t-test
    otherwise (at least two seeds each). Fewer: an untestable comparison (p NaN, never a tie);
    no spread at all: ``identical`` (p NaN).

    Example:
        >>> c = compare_scores({0: 0.92, 1: 0.93, 2: 0.94}, {0: 0.90, 1: 0.91, 2: 0.92})
        >>> c.paired, round(100 * c.delta, 1), c.identical, c.p_improve
        (True, 2.0, True, 1.0)
    """
    x = np.array(list(a.values()), dtype=float)
    y = np.array(list(b.values()), dtype=float)
    delta = float(x.mean() - y.mean()) if x.size and y.size else math.nan
    paired = set(a) == set(b) and len(a) >= 2
    if paired:
        seeds = sorted(a, key=str)
        xs, ys = np.array([a[s] for s in seeds], dtype=float), np.array([b[s] for s in seeds], dtype=float)
        diff = xs - ys
        sd = float(diff.std(ddof=1))
        _, low, high = mean_interval(diff, level)
        if sd <= NO_SPREAD:  # the same difference on every seed: said as it is, no p-value
            return _comparison(delta, delta, delta, math.nan, xs, ys, paired=True, sd=math.nan, level=level, same=True)
        p = float(stats.ttest_rel(xs, ys).pvalue)
        return _comparison(delta, low, high, p, xs, ys, paired=True, sd=sd, level=level)
    if x.size < 2 or y.size < 2:
        return _comparison(delta, math.nan, math.nan, math.nan, x, y, paired=False, sd=math.nan, level=level)
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se <= NO_SPREAD:  # every score the same on each side: no spread to test against
        return _comparison(delta, delta, delta, math.nan, x, y, paired=False, sd=math.nan, level=level, same=True)
    dof = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    p, low, high = float(stats.ttest_ind(x, y, equal_var=False).pvalue), delta - half, delta + half
    sd = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
    return _comparison(delta, low, high, p, x, y, paired=False, sd=sd, level=level)


def _comparison(
    delta: float,
    low: float,
    high: float,
    p: float,
    a: np.ndarray,
    b: np.ndarray,
    *,
    paired: bool,
    sd: float,
    level: float,
    same: bool = False,
) -> Comparison:
    """The :class:`Comparison` of score arrays ``a`` and ``b`` once its test is done (``sd`` NaN: none could be)."""
    needed = seeds_needed(delta, sd, paired=paired, level=level) if math.isfinite(sd) else math.nan
    improve = prob_improvement(a, b, paired=paired)
    return Comparison(delta, low, high, p, paired, improve, len(a), len(b), needed, identical=same)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a test).

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    indexed = [(p, i) for i, p in enumerate(pvalues) if math.isfinite(p)]
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = round(running, 12)
    return adjusted


def decide(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons of one table with their Holm-adjusted p-values set (``p_holm``)."""
    adjusted = holm([c.p for c in comparisons])
    return [replace(c, p_holm=p) for c, p in zip(comparisons, adjusted, strict=True)]
