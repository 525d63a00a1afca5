"""The report of a sweep whose score is lower-is-better: a language model's perplexity.

Every number is perplexity as it is (never negated, never a percentage): the ranking goes from the
lowest mean validation perplexity up, the recommendation is the configuration with the lowest mean
validation perplexity within the size and latency budgets, and each configuration is compared with
``compression=none`` over the seeds they share (for post-training methods the seed draws the
calibration data): the difference of test perplexity (A - none; negative is better) with its 95 %
interval, a paired t-test, and the seeds a test at 80 % power would need when it cannot tell them
apart. ``--min-score`` (a fraction of a higher-is-better score) does not apply and is said so. The answer
comes first, then the warnings (a perplexity near the task's baseline, failed runs, a single seed, simulated
latency), then the ranking.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from sweeper.report.families import UNCOMPRESSED
from sweeper.report.recommend import Budget, Recommendation
from sweeper.report.render import Block, Bullets, Section, Table, render_html, render_markdown
from sweeper.report.stats import SCORE, SELECT, compare_scores, mean_interval

if TYPE_CHECKING:
    from sweeper.report.build import ReportResult

__all__ = ["NEAR_BASELINE", "lower_is_better", "write_lower_is_better"]

NEAR_BASELINE = 0.9  # a recommended perplexity above this fraction of the task's baseline (unigram) perplexity


def lower_is_better(runs: pd.DataFrame) -> bool:
    """Whether the sweep's score is one where lower is better (its runs' tag ``score_direction``)."""
    return "score_direction" in runs and bool((runs["score_direction"] == "minimize").any())


def _table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: perplexities per seed and their means, size, latency, counts."""
    rows = []
    for label, group in runs.groupby("config", sort=False):
        ok = group[group["outcome"] == "ok"]
        scores = {seed: float(v) for seed, v in zip(ok["seed"], ok[SCORE], strict=True)}
        mean, low, high = mean_interval(list(scores.values()))
        rows.append(
            {
                "config": label,
                "compression": group["compression"].iloc[0],
                "scores": scores,
                "test": mean,
                "low": low,
                "high": high,
                "val": float(ok[SELECT].mean()) if len(ok) else math.nan,
                "size_bytes": float(ok["size_bytes"].median()) if len(ok) else math.nan,
                "latency_ms": float(ok["latency_ms"].median()) if len(ok) else math.nan,
                "latency_kind": ok["latency_kind"].iloc[0] if len(ok) and "latency_kind" in ok else "",
                "seeds": len(scores),
                "failed": int((group["outcome"] == "failed").sum()),
            }
        )
    table = pd.DataFrame(rows).set_index("config")
    return table.sort_values(["val", "size_bytes"], na_position="last")


def _ppl(mean: float, low: float = math.nan, high: float = math.nan) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.2f}" + (f" [{low:.2f}, {high:.2f}]" if math.isfinite(low) else " (1 seed)")


def _versus(row: pd.Series, base: pd.Series | None) -> str:
    """Test perplexity of this configuration minus none's, over their shared seeds, in words."""
    if base is None or row.name == base.name:
        return ""
    c = compare_scores(row["scores"], base["scores"])
    if c.identical:
        return f"{c.delta:+.2f} on each of {c.seeds} seeds (identical across seeds: no test)"
    if not c.testable:
        return f"{c.delta:+.2f} (single run: untested)"
    verdict = "significant" if c.significant else f"no detectable difference with {c.seeds} seeds"
    return f"{c.delta:+.2f} [{c.low:+.2f}, {c.high:+.2f}], {verdict} (paired p = {c.p:.2g})"


def _recommend(table: pd.DataFrame, budget: Budget) -> Recommendation:
    fits = table[table["test"].notna()]
    if budget.max_size_kb is not None:
        fits = fits[fits["size_bytes"] <= 1024 * budget.max_size_kb]
    if budget.max_latency_ms is not None:
        fits = fits[fits["latency_ms"] <= budget.max_latency_ms]
    if fits.empty:
        return Recommendation(budget, None, None, False, [], f"No configuration fits {budget.describe()}.")
    best = fits.iloc[0]
    base = table.loc[table["compression"] == UNCOMPRESSED]
    reference = base.iloc[0] if len(base) else None
    parts = [
        f"**Choose `{best.name}`**: test perplexity {_ppl(best['test'], best['low'], best['high'])} (lower is better)"
    ]
    if reference is not None and reference.name != best.name:
        ratio = reference["size_bytes"] / best["size_bytes"]
        parts.append(
            f"against {_ppl(reference['test'])} for `{reference.name}` ({_versus(best, reference)}), "
            f"{ratio:.1f}x smaller ({best['size_bytes'] / 2**20:.1f} vs {reference['size_bytes'] / 2**20:.1f} MiB)"
        )
    parts.append(f"{best['seeds']} seed(s); chosen on validation perplexity {best['val']:.2f}")
    runner = fits.iloc[1] if len(fits) > 1 else None
    sentence = "; ".join(parts) + (
        f". Runner-up `{runner.name}`: {_ppl(runner['test'])}." if runner is not None else "."
    )
    runner_up = None if runner is None else str(runner.name)
    return Recommendation(budget, str(best.name), runner_up, False, [str(n) for n in fits.index], sentence)


def _warnings(runs: pd.DataFrame, table: pd.DataFrame, rec: Recommendation) -> list[str]:
    """What a reader must know before trusting the answer, most important first."""
    found = []
    best = table.loc[rec.best] if rec.best is not None else None
    baseline = runs["baseline_test_score"].dropna() if "baseline_test_score" in runs else pd.Series(dtype=float)
    if best is not None and len(baseline) and best["test"] >= NEAR_BASELINE * float(baseline.mean()):
        found.append(
            f"**Near the baseline**: test perplexity {best['test']:.2f} is within "
            f"{100 * (1 - NEAR_BASELINE):.0f} % of the task's baseline ({float(baseline.mean()):.2f}): "
            "the model has learnt little of this text."
        )
    failed = int((runs["outcome"] == "failed").sum())
    if failed:
        found.append(f"**Failed runs**: {failed} run(s) failed and are missing from the comparison (Failures below).")
    if best is not None and best["seeds"] == 1:
        found.append("**Single seed**: one run per configuration cannot tell noise from effect: run seed=0,1,2.")
    if best is not None and best["latency_kind"] == "simulated":
        found.append(
            f"**Simulated latency**: `{best.name}` runs dense float kernels here, so its latency shows no speed-up "
            "its format may have in a runtime with packed kernels."
        )
    return found


def write_lower_is_better(
    runs: pd.DataFrame, budget: Budget, out: Path, *, sweep_id: str, experiment: str, note: str = ""
) -> ReportResult:
    """``report.md``, ``report.html`` and ``runs.csv`` of a sweep scored by perplexity (prepared runs)."""
    from sweeper.report.build import ReportResult

    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    table = _table(runs)
    rec = _recommend(table, budget)
    base = table.loc[table["compression"] == UNCOMPRESSED]
    reference = base.iloc[0] if len(base) else None
    counts = runs["outcome"].value_counts()
    header = [
        f"Experiment `{experiment or '?'}`, sweep `{sweep_id or '?'}`: {len(runs)} runs, {counts.get('ok', 0)} "
        f"finished, {counts.get('failed', 0)} failed; {len(table)} configurations. Generated "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "The score is **perplexity** of the next token over every token of the split: lower is better; "
        "every choice is made on validation perplexity, test perplexity is reported for what was chosen.",
        *([note] if note else []),
    ]
    if budget.min_score is not None:
        header.append("`--min-score` is a fraction of a higher-is-better score: it does not apply to perplexity.")
    rows = [
        {
            "configuration": name,
            "val perplexity": f"{row['val']:.2f}" if math.isfinite(row["val"]) else "—",
            "test perplexity [95 % CI]": _ppl(row["test"], row["low"], row["high"]),
            "vs none (test, A - none)": _versus(row, reference),
            "size (MiB)": f"{row['size_bytes'] / 2**20:.2f}",
            "x smaller": f"{reference['size_bytes'] / row['size_bytes']:.2f}" if reference is not None else "—",
            "latency b=1 (ms)": f"{row['latency_ms']:.2f} ({row['latency_kind']})",
            "seeds": row["seeds"],
            "failed": row["failed"],
        }
        for name, row in table.iterrows()
    ]
    failures = runs[runs["outcome"] == "failed"]
    warnings = _warnings(runs, table, rec)
    sections = [
        Section("Answer", [rec.sentence + (f" {warnings[0]}" if warnings else "")]),
        *([Section("Warnings", [Bullets(warnings)])] if warnings else []),
        Section("Sweep", list[Block](header)),
        Section("Ranking", [Table(pd.DataFrame(rows), "By mean validation perplexity, lowest first")]),
        *(
            [Section("Failures", [Table(failures[["config", "seed", "reason"]], "Failed runs")])]
            if len(failures)
            else []
        ),
    ]
    title = f"Which method to choose: sweep {sweep_id}" if sweep_id else "Which method to choose"
    (out / "report.md").write_text(render_markdown(title, sections), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, sections), encoding="utf-8")
    files = sorted(p for p in out.iterdir() if p.suffix in (".md", ".html", ".csv"))
    summary = table.assign(score_mean=table["test"], val_mean=table["val"], n_seeds=table["seeds"])
    return ReportResult(out, files, rec, summary, runs)
