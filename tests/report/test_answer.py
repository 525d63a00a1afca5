"""The answer a reader meets first: the card, honest statistics at the edges, the warnings, sections that belong."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from sweeper.report import checks
from sweeper.report.build import prepare_runs, write_report
from sweeper.report.grouping import OLD_NAMES, group_configs, with_score_names
from sweeper.report.recommend import Budget, recommend
from sweeper.report.stats import compare_scores

EMPTY_HISTORY = pd.DataFrame(columns=["run_id", "metric", "epoch", "value"])


def _sections(markdown: str) -> list[str]:
    return [line[3:] for line in markdown.splitlines() if line.startswith("## ")]


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0].strip()


def _report(runs: pd.DataFrame, tmp_path, budget: Budget | None = None) -> tuple[str, object]:
    result = write_report(runs, EMPTY_HISTORY, budget or Budget(), tmp_path, sweep_id="multirun/t", experiment="e")
    return (tmp_path / "report.md").read_text(), result


def test_the_readme_first_sweep_one_seed_says_single_run_and_never_tie(make_runs, tmp_path):
    one_network = dict(baseline_test_score=0.1, latency_rounds=[0.27, 0.28, 0.27], latency_source="interleaved")
    runs = make_runs(
        dict(optimizer="adam", lr=0.003, test_score=0.964, val_score=0.985, **one_network),
        dict(optimizer="sgd", lr=0.1, test_score=0.894, val_score=0.911, **one_network),
    )
    markdown, result = _report(runs, tmp_path)
    assert not re.search(r"\bties?\b|\btied\b", markdown, re.IGNORECASE)  # 1 seed: no test, so no tie either
    answer = _section(markdown, "Answer")
    assert answer.startswith("Choose **optimizer=adam")
    assert "the runner-up `optimizer=sgd`" in answer and "test accuracy +7.0 pp:" in answer
    assert "`optimizer=sgd`: the same architecture and size (same speed)" in answer  # timed once in the round
    assert "**single run: no evidence either way (run seed=0,1,2 to test it)**" in answer
    assert "[" not in answer.split("Against")[1]  # no interval with one seed
    assert "-7.0 pp, single run: untested" in _section(markdown, "Ranking")
    assert result.answer in markdown and "p =" not in markdown and "p <" not in markdown


def test_a_difference_without_spread_is_identical_across_seeds_not_a_p_value(make_runs, tmp_path):
    runs = make_runs(
        *[dict(compression="none", seed=s, test_score=0.90 + 0.01 * s) for s in (0, 1)],
        *[dict(compression="quantize", seed=s, test_score=0.883 + 0.01 * s, size_bytes=10_000) for s in (0, 1)],
    )  # -1.7 pp on both seeds
    comparison = compare_scores({0: 0.883, 1: 0.893}, {0: 0.90, 1: 0.91})
    assert comparison.identical and not comparison.testable and not comparison.tie and not comparison.significant
    markdown, _ = _report(runs, tmp_path)
    ranking = _section(markdown, "Ranking")
    assert "-1.7 pp, identical across seeds" in ranking and "[-1.7, -1.7]" not in markdown
    assert "significant" not in ranking and "p < 0.001" not in markdown
    assert "identical across seeds" in _section(markdown, "Answer")


def test_a_tested_difference_says_how_sure_in_words(make_runs, tmp_path):
    tight = make_runs(
        *[dict(compression="none", seed=s, test_score=v) for s, v in enumerate([0.921, 0.920, 0.919])],
        *[
            dict(compression="prune", seed=s, test_score=v, size_bytes=10_000)
            for s, v in enumerate([0.909, 0.911, 0.912])
        ],
    )
    markdown, _ = _report(tight, tmp_path / "tight", Budget(max_size_kb=20))
    assert "**clearly worse (3 seeds, a test at 5 %)**" in _section(markdown, "Answer")
    wide = make_runs(
        *[dict(compression="none", seed=s, test_score=v) for s, v in enumerate([0.95, 0.89, 0.92])],
        *[
            dict(compression="prune", seed=s, test_score=v, size_bytes=10_000, latency_kind="simulated")
            for s, v in enumerate([0.87, 0.93, 0.9])
        ],
    )
    markdown, _ = _report(wide, tmp_path / "wide", Budget(max_size_kb=20))
    answer = _section(markdown, "Answer")
    assert (
        "Choose **compression=prune**" in answer
        and "Against the uncompressed `compression=none`: 4.0x smaller" in answer
    )
    assert re.search(r"\*\*no detectable difference with 3 seeds; about \d+ seeds would tell\*\*", answer)
    assert "(simulated: its kernels are dense, so no speed-up is real)" in answer


# Each warning, on runs built to trigger it (and on the same runs without the trigger: silent).
def _near_baseline(make_runs, on: bool):
    return make_runs(*[dict(seed=s, test_score=0.30, baseline_test_score=0.28 if on else 0.10) for s in (0, 1)])


def _failed(make_runs, on: bool):
    bad = [dict(compression="prune", seed=1, status="FAILED", test_score=None, failure_reason="ValueError: x")]
    return make_runs(
        *[dict(compression=c, seed=0, size_bytes=40_000 if c == "none" else 9_000) for c in ("none", "prune")],
        *(bad if on else []),
    )


def _budget(make_runs, on: bool):
    return make_runs(
        dict(compression="none", test_score=0.85, epochs_run=3 if on else 8),
        dict(
            compression="prune", test_score=0.90, epochs_run=3, size_bytes=9_000, **{"compression.finetune_epochs": 5}
        ),
    )


def _edge(make_runs, on: bool):
    best = 0.1 if on else 0.01
    return make_runs(*[dict(lr=lr, test_score=0.95 if lr == best else 0.9) for lr in (0.001, 0.01, 0.1)])


def _slower(make_runs, on: bool):
    return make_runs(
        dict(compression="none", latency_ms=0.13),
        dict(compression="quantize", latency_ms=1.37 if on else 0.10, size_bytes=12_000),
    )


def _slower_in_round(make_runs, on: bool):
    rounds = {"latency_source": "interleaved"}
    slow = [0.30, 0.31, 0.29, 0.30] if on else [0.10, 0.11, 0.09, 0.10]
    return make_runs(
        dict(compression="none", latency_ms=0.1, latency_rounds=[0.10, 0.11, 0.10, 0.10], **rounds),
        dict(compression="prune", latency_ms=0.3, latency_rounds=slow, size_bytes=9_000, **rounds),
    )


def _spread(make_runs, on: bool):
    rounds = {"latency_source": "interleaved"}
    noisy = [0.10, 0.40, 0.05, 0.30] if on else [0.10, 0.11, 0.10, 0.105]
    return make_runs(
        dict(compression="none", latency_rounds=[0.10, 0.10, 0.10, 0.10], **rounds),
        dict(compression="prune", latency_rounds=noisy, size_bytes=9_000, **rounds),
    )


def _small(make_runs, on: bool):
    return make_runs(dict(train_samples=1500 if on else 5000))


def _partly(make_runs, on: bool):
    return make_runs(dict(compression="none"), dict(compression="prune", uncompressed_share=0.8 if on else 0.0))


WARNINGS = [
    ("near_baseline", _near_baseline),
    ("failed_trials", _failed),
    ("unequal_budget", _budget),
    ("edge_of_range", _edge),
    ("slower_than_float", _slower),
    ("slower_than_float", _slower_in_round),
    ("latency_spread", _spread),
    ("small_training_data", _small),
    ("uncompressed_layers", _partly),
]


@pytest.mark.parametrize("kind, runs_for", WARNINGS, ids=[f"{k}-{f.__name__}" for k, f in WARNINGS])
def test_each_warning_fires_on_a_sweep_built_to_trigger_it_and_is_silent_otherwise(make_runs, kind, runs_for):
    def kinds(on: bool) -> list[str]:
        runs = prepare_runs(runs_for(make_runs, on))
        table = group_configs(runs)
        return [w.kind for w in checks.collect(runs, table, recommend(table, Budget()))]

    assert kind in kinds(True)
    assert kinds(False) == []


def test_warnings_follow_the_answer_and_the_card_names_the_first(make_runs, tmp_path):
    markdown, result = _report(_slower(make_runs, True), tmp_path, Budget(max_size_kb=20))
    assert _sections(markdown)[:2] == ["Answer", "Warnings"]
    warning = _section(markdown, "Warnings")
    assert (
        "- **Compressed but slower**: At batch 1 in this latency round, `compression=quantize` 10.5x slower" in warning
    )
    assert "**Warning (compressed but slower)**: At batch 1 in this latency round" in _section(markdown, "Answer")
    assert [w.kind for w in result.warnings] == ["slower_than_float"]


def test_the_edge_of_the_searched_grid_is_named_with_its_range(make_runs):
    runs = prepare_runs(_edge(make_runs, True))
    table = group_configs(runs)
    (warning,) = checks.collect(runs, table, recommend(table, Budget()))
    assert "the best learning rate (0.1) is the largest of the 3 tried (0.001 to 0.1)" in warning.text
    two = prepare_runs(make_runs(*[dict(lr=lr, test_score=0.9 + lr) for lr in (0.01, 0.1)]))
    assert checks.edge_of_range(two, group_configs(two), recommend(group_configs(two), Budget())) is None


def test_sections_appear_only_when_the_sweep_varied_what_they_are_about(make_runs, tmp_path):
    compression = make_runs(
        *[
            dict(compression=c, seed=s, size_bytes=40_000 if c == "none" else 10_000, test_score=0.9 - 0.01 * s)
            for c in ("none", "quantize", "prune")
            for s in (0, 1, 2)
        ]
    )
    markdown, _ = _report(compression, tmp_path / "compression")
    titles = _sections(markdown)
    assert "Compression families against none" in titles and "Pareto front" in titles
    assert "Optimizer comparison" not in titles and "Training strategies" not in titles
    assert "tunability" not in markdown and "DeepOBS" not in markdown  # the glossary explains only what is used
    optimizers = make_runs(*[dict(optimizer=o, seed=s) for o in ("adam", "sgd") for s in (0, 1)])
    markdown, _ = _report(optimizers, tmp_path / "optimizers")
    titles = _sections(markdown)
    assert "Optimizer comparison" in titles and "tunability" in _section(markdown, "Glossary")
    assert "Pareto front" not in titles and "Compression families against none" not in titles  # one network
    assert "Failed and pruned runs" not in titles and "Warnings" not in titles


def test_one_name_per_concept_baseline_is_the_tasks_and_none_is_uncompressed(make_runs, tmp_path):
    runs = make_runs(
        *[
            dict(compression=c, size_bytes=40_000 if c == "none" else 9_000, baseline_test_score=0.1)
            for c in ("none", "prune")
        ]
    )
    markdown, result = _report(runs, tmp_path)
    assert "task baseline: " in _section(markdown, "Ranking")
    assert set(result.runs["family"]) == {"uncompressed", "pruning"}
    uses = [line for line in markdown.splitlines() if "baseline" in line and not line.startswith("| task baseline")]
    assert all("task" in line for line in uses), uses  # "baseline" always the task's


def test_tables_stay_narrow_and_the_mlflow_description_is_the_same_answer(make_runs, tmp_path):
    runs = make_runs(
        *[
            dict(compression=c, seed=s, size_bytes=40_000 if c == "none" else 10_000)
            for c in ("none", "quantize", "prune", "qat")
            for s in (0, 1, 2)
        ]
    )
    markdown, result = _report(runs, tmp_path)
    headers = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    widest = max(line.count(" | ") + 1 for line in headers if not line.startswith("| term"))
    assert widest <= 10  # the ranking's other columns are in its details table
    page = (tmp_path / "report.html").read_text()
    assert '<section class="answer">' in page and "overflow-wrap: break-word" in page
    assert result.description.startswith("**Which method to choose: sweep multirun/t**")
    assert _section(markdown, "Answer").strip() in result.description


def test_old_acc_names_stay_readable(make_runs):
    table = group_configs(prepare_runs(make_runs(dict(compression="none"), dict(compression="prune", test_score=0.95))))
    old = table.rename(columns={new: old for old, new in OLD_NAMES.items()})
    assert "acc_mean" in old and "score_mean" not in old
    assert with_score_names(old).columns.tolist() == table.columns.tolist()
    assert recommend(old, Budget()).best == recommend(table, Budget()).best == "compression=prune"


def test_every_section_module_is_registered_once_in_order():
    import importlib
    import pkgutil

    import sweeper.report.sections as package
    from sweeper.report.sections import SECTIONS

    modules = [m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
    builders = {importlib.import_module(f"{package.__name__}.{name}").__dict__.get("build") for name in modules}
    assert set(SECTIONS) == builders - {None} and len(SECTIONS) == len(set(SECTIONS))
    assert [b.__module__.rsplit(".", 1)[1] for b in SECTIONS][:2] == ["answer", "warnings"]
    assert SECTIONS[-1].__module__.endswith("glossary")  # it explains what the others used


def test_a_comparison_read_the_other_way_round():
    comparison = compare_scores({0: 0.9, 1: 0.92, 2: 0.95}, {0: 0.85, 1: 0.9, 2: 0.91})
    back = comparison.flipped()
    assert back.delta == -comparison.delta and (back.low, back.high) == (-comparison.high, -comparison.low)
    assert back.p == comparison.p and back.p_improve == 1 - comparison.p_improve
