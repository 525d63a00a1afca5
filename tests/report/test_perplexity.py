"""The report of a sweep scored by perplexity: lowest first, every number as it is, the recommendation in its words."""

from __future__ import annotations

import pandas as pd

from sweeper.report.build import write_report
from sweeper.report.recommend import Budget

PPL = {"none": [10.0, 10.2, 10.1], "gptq": [10.6, 10.9, 10.7], "rtn": [14.0, 15.0, 14.5], "magnitude": [40.0, 45, 44]}
NO_HISTORY = pd.DataFrame(columns=["run_id", "metric", "epoch", "value"])
SIZES = {"none": 540e6, "gptq": 80e6, "rtn": 80e6, "magnitude": 300e6}


def _runs(make_runs):
    specs = [
        dict(compression=method, seed=seed, test_score=value, val_score=value + 0.3, size_bytes=SIZES[method],
             score_metric="perplexity", score_direction="minimize", latency_ms=1000.0, family=None)
        for method, values in PPL.items()
        for seed, value in enumerate(values)
    ]  # fmt: skip
    return make_runs(*specs)


def test_the_ranking_goes_from_the_lowest_perplexity_up_and_compares_each_with_none(make_runs, tmp_path):
    result = write_report(_runs(make_runs), NO_HISTORY, Budget(), tmp_path, sweep_id="s")
    markdown = (tmp_path / "report.md").read_text()
    order = [markdown.index(f"| compression={m} ") for m in ("none", "gptq", "rtn", "magnitude")]
    assert order == sorted(order)  # lowest validation perplexity first
    assert "10.10 [" in markdown and "test perplexity" in markdown and "lower is better" in markdown
    assert "1010" not in markdown and " pp" not in markdown  # no percentages of a perplexity
    gptq_row = next(line for line in markdown.splitlines() if line.startswith("| compression=gptq "))
    assert "+0.63 [" in gptq_row and "significant" in gptq_row  # 0.63 worse than none over 3 paired seeds
    assert result.recommendation.best == "compression=none"


def test_under_a_size_budget_the_recommendation_speaks_perplexity(make_runs, tmp_path):
    result = write_report(_runs(make_runs), NO_HISTORY, Budget(max_size_kb=100_000), tmp_path)
    sentence = result.recommendation.sentence
    assert result.recommendation.best == "compression=gptq" and result.recommendation.runner_up == "compression=rtn"
    assert "test perplexity 10.73" in sentence and "(lower is better)" in sentence and "6.8x smaller" in sentence


def test_the_answer_comes_first_and_warnings_fire_only_when_their_case_is_there(make_runs, tmp_path):
    write_report(_runs(make_runs), NO_HISTORY, Budget(), tmp_path / "clean", sweep_id="s")
    clean = (tmp_path / "clean" / "report.md").read_text()
    assert clean.index("## Answer") < clean.index("## Sweep") < clean.index("## Ranking")
    assert "## Warnings" not in clean and "## Failures" not in clean
    one_seed = make_runs(
        dict(compression="none", seed=0, test_score=95.0, val_score=95.3, size_bytes=SIZES["none"],
             score_metric="perplexity", score_direction="minimize", baseline_test_score=100.0, family=None),
        dict(compression="rtn", seed=0, status="FAILED", failure_reason="RuntimeError: boom", test_score=None,
             val_score=None, score_metric="perplexity", score_direction="minimize", family=None),
    )  # fmt: skip
    write_report(one_seed, NO_HISTORY, Budget(), tmp_path / "warned", sweep_id="s")
    warned = (tmp_path / "warned" / "report.md").read_text()
    warnings = warned[warned.index("## Warnings") : warned.index("## Sweep")]
    for title in ("Near the baseline", "Failed runs", "Single seed"):
        assert f"**{title}**" in warnings, title
    assert "**Near the baseline**" in warned[: warned.index("## Warnings")]  # the first one in the answer too
    assert "## Failures" in warned
