"""The report's logic on synthetic runs: Pareto, hypervolume, grouping, ties, recommendation, files."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_TASK, argv
from omegaconf import OmegaConf

from sweeper.report.analysis import family_summary, matched_ratios, optimizer_summary, ratio_curves
from sweeper.report.build import prepare_runs, write_report
from sweeper.report.callback import ReportCallback
from sweeper.report.grouping import FIXED_TAG, group_configs, split_sweeps
from sweeper.report.pareto import hypervolume, pareto_mask
from sweeper.report.recommend import Budget, recommend
from sweeper.report.stats import compare_scores, holm, mean_interval

EMPTY_HISTORY = pd.DataFrame(columns=["run_id", "metric", "epoch", "value"])
SECTIONS = [  # a sweep that varies optimizer, strategy and compression, every run finished, no warning
    "Answer",
    "Sweep",
    "The choice in detail",
    "Ranking",
    "Pareto front",
    "Compression families against none",
    "Optimizer comparison",
    "Training strategies",
    "Glossary",
]


def brute_force_front(points: np.ndarray) -> np.ndarray:
    """Non-dominated mask by broadcasting every pair (minimization)."""
    no_worse = np.all(points[:, None, :] <= points[None, :, :], axis=2)  # [j, i]: j no worse than i
    better = np.any(points[:, None, :] < points[None, :, :], axis=2)
    return ~np.any(no_worse & better, axis=0)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_matches_brute_force_on_random_points(dims, seed):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 6, size=(40, dims)).astype(float)  # small integers: many ties and duplicates
    mask = pareto_mask(points)
    assert mask.tolist() == brute_force_front(points).tolist()
    assert mask.any() and not mask.all()


def test_hypervolume_of_hand_computed_cases():
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]) == pytest.approx(3 + 2 + 1)
    # 3-D: boxes 2x2x1 and 1x1x2 overlapping in a unit cube -> 4 + 2 - 1
    assert hypervolume([[1, 1, 2], [2, 2, 1]], [3, 3, 3]) == pytest.approx(5.0)
    # a dominated point and one beyond the reference add nothing
    assert hypervolume([[1, 1, 2], [2, 2, 1], [2, 2, 2], [0, 0, 5]], [3, 3, 3]) == pytest.approx(5.0)
    assert hypervolume(np.empty((0, 3)), [1, 1, 1]) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_hypervolume_3d_matches_inclusion_exclusion(seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, size=(6, 3))
    ref = np.ones(3)
    total = 0.0
    for k in range(1, len(points) + 1):  # union of boxes [p, ref] by inclusion-exclusion
        for subset in itertools.combinations(points, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * float(np.prod(ref - corner))
    assert hypervolume(points, ref) == pytest.approx(total)


def test_grouping_over_seeds_gives_mean_std_and_counts(make_runs):
    accuracies = [0.80, 0.90, 0.85]
    runs = prepare_runs(
        make_runs(
            *[dict(seed=s, test_score=a) for s, a in enumerate(accuracies)],
            dict(seed=3, status="FAILED", test_score=None, failure_reason="TrainingDiverged: loss nan"),
            dict(seed=4, test_score=0.99, latency_ms=None),  # finished but a metric is missing
            dict(seed=5, status="KILLED", optuna_state="PRUNED", test_score=None),
            dict(optimizer="sgd", lr=0.1, seed=0, test_score=0.5),
        )
    )
    table = group_configs(runs)
    assert list(table.index) == ["optimizer=adam", "optimizer=sgd"]  # lr follows the optimizer: not named
    adam = table.iloc[0]
    assert adam["score_mean"] == pytest.approx(np.mean(accuracies))
    assert adam["score_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert (adam["n_seeds"], adam["n_failed"], adam["n_pruned"]) == (3, 2, 1)
    assert math.isnan(table.iloc[1]["score_std"]) and table.iloc[1]["rank"] == 2
    reasons = runs.set_index("seed").loc[[3, 4], "reason"].tolist()
    assert reasons[0].startswith("TrainingDiverged") and reasons[1] == "missing metric(s): latency_ms"


def test_labels_name_what_varies_besides_the_seed(make_runs):
    runs = prepare_runs(make_runs(dict(seed=0), dict(seed=1), dict(compression="quantize", seed=0)))
    assert runs["config"].tolist() == ["compression=none", "compression=none", "compression=quantize"]
    # as the methods declare it; `none`'s "baseline" reads "uncompressed" (the task's baseline is another thing)
    assert runs["family"].tolist() == ["uncompressed", "uncompressed", "quantization"]


def test_a_method_is_filed_under_the_family_its_runs_carry_and_other_without_one(make_runs):
    runs = prepare_runs(
        make_runs(
            dict(compression="my_lowrank", family="low-rank"),
            dict(compression="mystery", family=None),
            dict(compression="mixed"),
        )
    )
    assert runs["family"].tolist() == ["low-rank", "other", "quantization"]


def _two_configs(make_runs, a: list[float], b: list[float], **b_spec) -> pd.DataFrame:
    """compression=none with test accuracies ``a`` and quantize with ``b``, seeds 0, 1, ..."""
    return make_runs(
        *[dict(compression="none", seed=s, test_score=v) for s, v in enumerate(a)],
        *[dict(compression="quantize", seed=s, test_score=v, size_bytes=10_000, **b_spec) for s, v in enumerate(b)],
    )


def test_two_pp_over_three_seeds_is_significant_with_small_spread_and_a_tie_with_large(make_runs):
    tight = _two_configs(make_runs, [0.921, 0.920, 0.919], [0.899, 0.900, 0.901])  # 2 pp apart, 0.1 pp spread
    rec = recommend(group_configs(prepare_runs(tight)), Budget())
    assert rec.best == "compression=none" and rec.runner_up == "compression=quantize"
    assert not rec.tie and "significant" in rec.sentence and "not distinguishable" not in rec.sentence

    wide = _two_configs(make_runs, [0.95, 0.89, 0.92], [0.87, 0.93, 0.90])  # 2 pp apart, 3 pp spread
    rec = recommend(group_configs(prepare_runs(wide)), Budget())
    assert rec.tie and "accuracy -2.0 pp [" in rec.sentence and "tie" not in rec.sentence
    assert "no detectable difference with 3 seeds (about" in rec.sentence
    assert "the seeds cannot tell the two apart; choose compression=quantize if size matters" in rec.sentence


def test_welch_knows_the_number_of_seeds_and_unequal_spreads():
    """The old rule (mean ± 1 std overlap) called these apart; Welch's test does not (p ~ 0.06 at n = 3)."""
    adam, sgd = {0: 0.90, 1: 0.91, 2: 0.92}, {10: 0.72, 11: 0.82, 12: 0.62}
    comparison = compare_scores(adam, sgd)
    assert not comparison.paired and 0.05 < comparison.p < 0.1 and comparison.tie
    assert comparison.p_improve == 1.0  # every seed pair favours adam: P(A>B) alone is no test
    single = compare_scores({0: 0.9}, {0: 0.8})
    assert not single.testable and not single.tie and not single.significant  # one seed: no test, never a tie
    assert single.words().startswith("+10.0 pp, single run each: no evidence either way")
    assert math.isnan(mean_interval([0.9])[1])


def test_a_paired_comparison_detects_a_consistent_gain_that_an_unpaired_one_misses():
    base = [0.80, 0.85, 0.90, 0.95]  # seeds differ a lot (split, init) ...
    gain = [0.011, 0.009, 0.010, 0.012]  # ... the method adds about 1 pp on every one of them
    a = {s: v + g for s, (v, g) in enumerate(zip(base, gain, strict=True))}
    b = dict(enumerate(base))
    paired = compare_scores(a, b)
    unpaired = compare_scores({s + 10: v for s, v in a.items()}, b)  # the same numbers, other seeds
    assert paired.paired and not paired.tie and paired.p_improve == 1.0 and paired.low > 0
    assert not unpaired.paired and unpaired.tie and unpaired.low < 0 < unpaired.high
    assert math.isfinite(unpaired.needed) and unpaired.needed > 4


def test_holm_adjusts_within_one_table():
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == [0.03, 0.06, 0.06]
    assert math.isnan(holm([float("nan")])[0])


def test_selection_uses_validation_even_when_another_lr_has_the_best_test(make_runs, tmp_path):
    runs = make_runs(
        *[dict(optimizer="adam", lr=0.001, seed=s, val_score=0.95, test_score=0.90 + 0.001 * s) for s in range(3)],
        *[dict(optimizer="adam", lr=0.01, seed=s, val_score=0.90, test_score=0.93 + 0.001 * s) for s in range(3)],
        *[dict(optimizer="sgd", lr=0.1, seed=s, val_score=0.80, test_score=0.95) for s in range(3)],
    )
    prepared = prepare_runs(runs)
    table = group_configs(prepared)
    assert table.index[0] == "optimizer=adam optimizer.lr=0.001" and table.iloc[0]["rank"] == 1
    summary = optimizer_summary(prepared, table, EMPTY_HISTORY, target=0.8).set_index("optimizer")
    assert summary.loc["adam", "lr"] == 0.001 and summary.loc["adam", "score_mean"] == pytest.approx(0.901)
    assert list(summary.index) == ["adam", "sgd"]  # sgd's best test does not make it first
    assert recommend(table, Budget()).best == "optimizer=adam optimizer.lr=0.001"
    markdown = (write_report(runs, EMPTY_HISTORY, Budget(), tmp_path).out_dir / "report.md").read_text()
    assert "Every choice is made on validation accuracy" in markdown and "[95 % CI]" in markdown
    assert "significant" in markdown or "no detectable difference" in markdown


def test_a_sweep_dir_rerun_with_other_overrides_yields_two_sweeps(make_runs, tmp_path):
    def invocation(epochs: int, start: int) -> list[dict]:
        return [
            dict(
                optimizer=o,
                seed=s,
                epochs=epochs,
                epochs_run=epochs,
                start_time=start + i,
                test_score=(0.95 if epochs == 200 else 0.85) + 0.001 * s,
                **{FIXED_TAG: f"strategy.epochs={epochs}"},
            )
            for i, (o, s) in enumerate(itertools.product(("adam", "sgd"), (0, 1)))
        ]

    runs = make_runs(*invocation(200, 0), *invocation(20, 100))
    parts = split_sweeps(runs)
    assert [name for name, _ in parts] == ["strategy.epochs=20", "strategy.epochs=200"]  # the latest first
    result = write_report(runs, EMPTY_HISTORY, Budget(), tmp_path, sweep_id="multirun/x")
    (other,) = result.others
    assert other.out_dir == tmp_path / "sweep-2" and (other.out_dir / "report.md").is_file()
    for report, epochs in ((result, 20), (other, 200)):
        assert list(report.table.index) == ["optimizer=adam", "optimizer=sgd"]  # the epochs are not a dimension
        assert (report.table["n_seeds"] == 2).all() and (report.runs["epochs"] == epochs).all()
    markdown = (tmp_path / "report.md").read_text()
    assert "2 sweeps under one sweep id" in markdown and "`strategy.epochs`" in markdown
    assert "sweep-2/report.md" in markdown
    assert len(split_sweeps(runs.drop(columns=FIXED_TAG))) == 1  # older runs without the tag: one sweep


def test_budget_counts_fine_tuning_and_the_recommendation_says_so(make_runs, tmp_path):
    runs = make_runs(
        *[dict(compression="none", seed=s, epochs_run=3, test_score=0.85 + 0.001 * s) for s in range(3)],
        *[
            dict(
                compression="prune",
                seed=s,
                epochs_run=3,
                test_score=0.90 + 0.001 * s,
                size_bytes=20_000,
                **{"compression.finetune_epochs": 5},
            )
            for s in range(3)
        ],
        *[dict(compression="distill", seed=s, epochs_run=3, test_score=0.80, teacher_epochs=30) for s in range(3)],
    )
    table = group_configs(prepare_runs(runs))
    assert table.loc["compression=prune", "total_epochs"] == 8
    assert table.loc["compression=distill", "total_epochs"] == 33
    assert table.loc["compression=none", "total_epochs"] == 3
    rec = recommend(table, Budget())
    assert rec.best == "compression=prune" and "trained 8 epochs in all" in rec.sentence and "against 3" in rec.sentence
    summary = family_summary(table).set_index("family")
    assert summary.loc["pruning", "epochs"] == 8 and summary.loc["pruning", "uncompressed_epochs"] == 3
    markdown = (write_report(runs, EMPTY_HISTORY, Budget(), tmp_path).out_dir / "report.md").read_text()
    assert "8 vs 3 (more training)" in markdown and "epochs in all" in markdown


def test_families_are_compared_at_matched_compression_ratios(make_runs, tmp_path):
    points = [
        ("prune", "compression.amount", 0.5, 2.0, 0.90),
        ("prune", "compression.amount", 0.75, 4.0, 0.88),
        ("prune", "compression.amount", 0.9, 10.0, 0.80),
        ("quantize", "compression.bits", 8, 4.0, 0.91),
        ("quantize", "compression.bits", 4, 8.0, 0.86),
    ]
    specs = [
        dict(
            compression=method,
            seed=s,
            compression_ratio=ratio,
            size_bytes=40_000 / ratio,
            test_score=acc + 0.002 * s,
            **{knob: strength},
        )
        for method, knob, strength, ratio, acc in points
        for s in range(2)
    ]
    specs += [dict(compression="none", seed=s, test_score=0.92 + 0.002 * s) for s in range(2)]
    runs = make_runs(*specs)
    table = group_configs(prepare_runs(runs))
    curves = ratio_curves(table)
    assert set(curves["family"]) == {"pruning", "quantization"} and len(curves) == 5
    matched = matched_ratios(curves, points=2)
    assert matched["ratio"].tolist() == pytest.approx([4.0, 8.0])
    matched = matched.assign(ratio=matched["ratio"].round(6)).set_index("ratio")
    # at 8x, pruning interpolates between 4x (0.881) and 10x (0.801) in log ratio
    expected = 0.881 + (0.801 - 0.881) * math.log(8 / 4) / math.log(10 / 4)
    assert matched.loc[8.0, "score_a"] == pytest.approx(expected) and matched.loc[8.0, "score_b"] == pytest.approx(
        0.861
    )
    write_report(runs, EMPTY_HISTORY, Budget(), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "## Accuracy against compression ratio" in markdown and (tmp_path / "accuracy_vs_ratio.png").is_file()
    assert "matched compression ratios" in markdown


def test_header_shows_split_sizes_and_warns_on_small_training_data(make_runs, tmp_path):
    sizes = dict(train_samples=1530, val_samples=270, test_samples=450)
    write_report(make_runs(dict(**sizes), dict(seed=1, **sizes)), EMPTY_HISTORY, Budget(), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "Split sizes (samples): train 1,530, validation 270, test 450." in markdown
    assert "- **Small training set**: 1,530 training samples" in markdown
    large = dict(train_samples=5000, val_samples=900, test_samples=1000)
    write_report(make_runs(dict(**large)), EMPTY_HISTORY, Budget(), tmp_path / "large")
    assert "Small training set" not in (tmp_path / "large" / "report.md").read_text()


def _random_table(make_runs, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    specs = [
        dict(
            compression=f"method{i}",
            seed=s,
            test_score=float(rng.uniform(0.5, 1)),
            size_bytes=float(rng.uniform(5e3, 2e5)),
            latency_ms=float(rng.uniform(0.05, 2)),
        )
        for i in range(8)
        for s in range(2)
    ]
    for i in range(8):  # size and latency are properties of the method, not of the seed
        specs[2 * i + 1].update(size_bytes=specs[2 * i]["size_bytes"], latency_ms=specs[2 * i]["latency_ms"])
    return group_configs(prepare_runs(make_runs(*specs)))


@pytest.mark.parametrize("seed", range(4))
def test_recommendation_respects_every_budget(make_runs, seed):
    table = _random_table(make_runs, seed)
    rng = np.random.default_rng(100 + seed)
    for _ in range(20):
        budget = Budget(
            max_size_kb=float(rng.uniform(5, 200)),
            max_latency_ms=float(rng.uniform(0.05, 2)),
            min_score=float(rng.uniform(0.4, 0.9)),
        )
        ok = (
            (table["size_bytes"] / 1024 <= budget.max_size_kb)
            & (table["latency_ms"] <= budget.max_latency_ms)
            & (table["score_mean"] >= budget.min_score)
        )
        rec = recommend(table, budget)
        if ok.any():
            assert rec.best == table[ok]["score_mean"].idxmax()
            assert set(rec.feasible) == set(table.index[ok])
            if ok.sum() > 1:
                assert rec.runner_up == table[ok]["score_mean"].drop(rec.best).idxmax()
        else:
            assert rec.best is None and rec.closest in table.index and rec.relax
            relaxed = Budget(
                **{name: _relaxed(flag, getattr(budget, name), rec.relax) for flag, name in _FLAGS.items()}
            )
            assert rec.closest in recommend(table, relaxed).feasible


_FLAGS = {"--max-size-kb": "max_size_kb", "--max-latency-ms": "max_latency_ms", "--min-score": "min_score"}


def _relaxed(flag: str, value: float | None, relax: dict[str, tuple[float, float]]) -> float | None:
    if flag not in relax:
        return value
    needed = relax[flag][1]
    return math.floor(needed * 1000) / 1000 if flag == "--min-score" else math.ceil(needed * 1000) / 1000


def test_recommendation_flips_when_a_budget_changes(make_runs):
    runs = make_runs(
        *[dict(compression="none", seed=s, test_score=0.95 + 0.001 * s, size_bytes=200_000) for s in range(2)],
        *[
            dict(compression="quantize", seed=s, test_score=0.90 + 0.001 * s, size_bytes=50_000, latency_ms=0.5)
            for s in range(2)
        ],
    )
    table = group_configs(prepare_runs(runs))
    assert recommend(table, Budget()).best == "compression=none"
    assert recommend(table, Budget(max_size_kb=100)).best == "compression=quantize"
    rec = recommend(table, Budget(max_size_kb=100, max_latency_ms=0.3))
    assert rec.best is None and rec.closest == "compression=quantize"
    assert "relax --max-latency-ms from 0.3 to 0.5" in rec.sentence


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_size_kb=-1.0), "--max-size-kb=-1: must be a number > 0"),
        (dict(max_latency_ms="fast"), "--max-latency-ms=fast: must be a number > 0"),
        (dict(max_latency_ms=float("nan")), "--max-latency-ms=nan"),
        (dict(min_score=90.0), "--min-score=90: must be a number in [0, 1]"),
    ],
)
def test_bad_budgets_are_one_line_errors_naming_the_flag(kwargs, message):
    with pytest.raises(ValueError) as error:
        Budget(**kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_family_summary_against_none(make_runs):
    runs = make_runs(
        dict(compression="none", size_bytes=40_000, latency_ms=0.2, test_score=0.90),
        dict(compression="quantize", size_bytes=10_000, latency_ms=0.3, test_score=0.88, latency_kind="simulated"),
        dict(compression="prune", size_bytes=20_000, latency_ms=0.1, test_score=0.91),
    )
    summary = family_summary(group_configs(prepare_runs(runs))).set_index("family")
    assert summary.loc["quantization", "size_ratio"] == pytest.approx(4.0)
    assert summary.loc["quantization", "latency_ratio"] == pytest.approx(1.5)
    assert summary.loc["quantization", "score_delta_pp"] == pytest.approx(-2.0)
    assert summary.loc["pruning", "size_ratio"] == pytest.approx(2.0)
    assert "uncompressed" not in summary.index


def test_optimizer_speed_and_tunability(make_runs):
    runs = prepare_runs(
        make_runs(
            dict(optimizer="adam", lr=0.001, test_score=0.900),
            dict(optimizer="adam", lr=0.01, test_score=0.895),
            dict(optimizer="adam", lr=0.1, test_score=0.5),
            dict(optimizer="sgd", lr=0.1, test_score=0.7),
        )
    )
    curve = [0.3, 0.6, 0.85, 0.9]
    history = pd.DataFrame(
        [{"run_id": "run0", "metric": "val_score", "epoch": e, "value": v} for e, v in enumerate(curve)]
    )
    summary = optimizer_summary(runs, group_configs(runs), history, target=0.8).set_index("optimizer")
    assert summary.loc["adam", "tunability"] == pytest.approx(2 / 3)  # 0.001 and 0.01 within 1 pp of the best
    assert summary.loc["adam", "epochs_to_target"] == 3 and summary.loc["adam", "lr"] == 0.001
    assert summary.loc["sgd", "tunability"] == 1.0 and math.isnan(summary.loc["sgd", "epochs_to_target"])


def test_report_files_have_every_section(make_runs, tmp_path):
    runs = make_runs(
        *[
            dict(
                optimizer=o,
                strategy=s,
                compression=c,
                seed=seed,
                test_score=0.8 + 0.05 * seed + (0.05 if o == "adam" else 0),
                size_bytes=40_000 if c == "none" else 11_000,
            )
            for o in ("adam", "sgd")
            for s in ("default", "early_stopping")
            for c in ("none", "quantize")
            for seed in (0, 1)
        ]
    )
    history = pd.DataFrame(
        [
            {"run_id": rid, "metric": m, "epoch": e, "value": 0.5 + 0.1 * e}
            for rid in runs["run_id"]
            for m in ("val_score", "train_loss")
            for e in range(4)
        ]
    )
    result = write_report(runs, history, Budget(max_size_kb=20), tmp_path, sweep_id="multirun/x", experiment="e")
    markdown = (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert [line[3:] for line in markdown.splitlines() if line.startswith("## ")] == SECTIONS
    assert all(f"<h2>{title}</h2>" in page for title in SECTIONS)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))  # one lr per optimizer: no learning-rate curve
    assert pngs == ["accuracy_vs_latency.png", "accuracy_vs_size.png", "learning_curves.png", "optimizer_curves.png"]
    assert page.count("data:image/png;base64,") == len(pngs) and 'src="http' not in page
    assert len(pd.read_csv(tmp_path / "runs.csv")) == len(runs)
    assert result.recommendation.best is not None and "compression=quantize" in result.recommendation.best
    assert "quantization" in markdown and "x smaller" in markdown


def test_sweep_without_finished_runs_lists_the_failures(make_runs, tmp_path):
    runs = make_runs(
        dict(status="FAILED", test_score=None, failure_reason="ValueError: boom"),
        dict(seed=1, status="FAILED", test_score=None, failure_reason="ValueError: boom"),
    )
    result = write_report(runs, EMPTY_HISTORY, Budget(), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert result.finished == 0 and result.recommendation.best is None
    assert "No run finished" in markdown and "## Failed and pruned runs" in markdown and "## Ranking" not in markdown
    assert markdown.count("ValueError: boom") == 2


def test_callback_can_be_switched_off_and_never_fails_the_sweep(tmp_path, tracking_uri, caplog):
    config = OmegaConf.create(
        {
            "tracking": {"enabled": True, "uri": tracking_uri, "experiment": "missing", "sweep_id": None},
            "hydra": {"sweep": {"dir": str(tmp_path / "sweep")}},
        }
    )
    ReportCallback(enabled=False).on_multirun_end(config)
    assert not (tmp_path / "sweep").exists()
    ReportCallback().on_multirun_end(config)  # unknown experiment: a warning, no exception
    assert "report not written" in caplog.text and "missing" in caplog.text
    ReportCallback(max_size_kb=-5).on_multirun_end(config)
    assert "--max-size-kb=-5" in caplog.text


def test_callback_finds_an_optuna_sweep_by_its_study_name(tmp_path, tracking_uri):
    from sweeper.tracking.results import load_runs
    from sweeper.tracking.runs import TrialRun

    for seed in (0, 1):
        tags = {"sweep_id": "study-a", "optuna_study": "study-a", "optimizer": "adam", "compression": "none"}
        with TrialRun(tracking_uri, "sweeper", run_name=f"trial {seed}", tags=tags) as run:
            run.log_params({"seed": seed, "optimizer.lr": 0.01})
            run.log_results({"test_score": 0.8 + 0.01 * seed, "size_bytes": 1000, "latency_ms": 0.1})
    config = OmegaConf.create(
        {
            "tracking": {"enabled": True, "uri": tracking_uri, "experiment": "sweeper"},
            "hydra": {"sweep": {"dir": str(tmp_path / "sweep")}, "sweeper": {"study_name": "study-a"}},
        }
    )
    ReportCallback().on_multirun_end(config)
    assert "Choose" in (tmp_path / "sweep" / "report" / "report.md").read_text()
    assert len(load_runs("sweeper", sweep_id="study-a", tracking_uri=tracking_uri)) == 2  # report run left out
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name("sweeper").experiment_id
    (report,) = client.search_runs([experiment_id], filter_string="tags.sweeper_role = 'sweep'")
    assert report.data.tags["sweep_id"] == "study-a" and report.info.status == "FINISHED"
    assert report.data.metrics["trials_ok"] == 2 and "Choose" in report.data.tags["mlflow.note.content"]


def test_configurations_deploying_the_same_network_share_one_latency():
    """Optimizers do not change the network: their latency difference is timing noise, pooled away."""
    from sweeper.report.grouping import classify, config_labels, group_configs

    runs = pd.DataFrame(
        {
            "status": ["FINISHED"] * 4,
            "data": "digits",
            "model": "cnn",
            "strategy": "default",
            "optimizer": ["adam", "adam", "sgd", "sgd"],
            "compression": ["none", "none", "distill", "quantize"],
            "model.hidden": 64,
            "lr": [0.003, 0.003, 0.1, 0.1],
            "seed": [0, 1, 0, 0],
            "test_score": [0.96, 0.97, 0.90, 0.89],
            "size_bytes": [58000, 58000, 58000, 17000],
            "params": 13706,
            "nonzero_params": 13706,
            "latency_ms": [0.20, 0.40, 0.90, 0.50],
            "latency_ms_batch": [0.02, 0.02, 0.04, 0.03],
            "compression_ratio": 1.0,
            "train_seconds": 2.0,
            "epochs_run": 20,
            "latency_kind": "real",
        }
    )
    runs = runs.join(classify(runs))
    runs["config"] = config_labels(runs)
    table = group_configs(runs)
    latency = table.set_index(["optimizer", "compression"])["latency_ms"]
    assert latency["adam", "none"] == latency["sgd", "distill"] == pytest.approx(0.40)  # median of 0.2, 0.4, 0.9
    assert latency["sgd", "quantize"] == pytest.approx(0.50)  # another network keeps its own


def test_an_equal_budget_sweep_gives_none_the_longer_schedule(make_cfg):
    from sweeper.trial.run import run

    small = ["data=synthetic", "data.n_samples=300", "model=mlp", "measure.latency_seconds=0.01"]
    equal = ["compare.equal_budget=true", "compare.extra_epochs=5"]
    none = run(make_cfg(*small, *equal)).metrics
    pruned = run(make_cfg(*small, *equal, "compression=prune")).metrics  # 3 epochs + 5 of fine-tuning
    plain = run(make_cfg(*small)).metrics
    assert none["epochs_run"] == 8 and pruned["epochs_run"] == 3 and plain["epochs_run"] == 3
    assert none["train_samples"] + none["val_samples"] + none["test_samples"] == 300


def test_an_equal_budget_without_extra_epochs_is_a_one_line_error(make_cfg):
    from sweeper.errors import ConfigError
    from sweeper.trial.plan import plan_trial

    with pytest.raises(ConfigError, match=r"compare.extra_epochs=auto: known only in a grid multirun"):
        plan_trial(make_cfg("data=synthetic", "model=mlp", "compare.equal_budget=true"))
    with pytest.raises(ConfigError, match=r"compare.extra_epochs=-1: allowed: auto or an integer >= 0"):
        plan_trial(make_cfg("data=synthetic", "model=mlp", "compare.equal_budget=true", "compare.extra_epochs=-1"))


@pytest.mark.slow
@pytest.mark.integration
def test_an_equal_budget_grid_gives_none_the_longest_fine_tuning_of_its_jobs(run_cli, tmp_path):
    from sweeper.tracking.results import load_runs

    proc = run_cli(*argv("-m compression=none,prune compare.equal_budget=true"), *TINY_TASK)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = load_runs(sweep_id="latest", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").set_index("compression")
    assert runs.loc["none", "epochs_run"] == 2 + 5  # the prune preset fine-tunes 5 epochs
    assert runs.loc["prune", "epochs_run"] == 2


def test_trials_tag_the_fixed_overrides_of_their_command_line():
    from sweeper.trial.layout import from_command_line

    argv = (
        "-m",
        "optimizer=adam,sgd",
        "strategy.epochs=200",
        "seed=0,1",
        "model=mlp",
        "hydra.callbacks.report.enabled=false",
        "tracking.uri=sqlite:///x.db",
    )
    assert from_command_line(argv).fixed_overrides() == "model=mlp strategy.epochs=200"
    assert from_command_line(("-m", "optimizer=adam,sgd", "seed=0,1")).fixed_overrides() == ""


def test_callback_and_cli_report_each_sweep_of_a_rerun_sweep_dir(tmp_path, tracking_uri, capsys, monkeypatch):
    from mlflow import MlflowClient

    from sweeper.report.__main__ import main
    from sweeper.tracking.runs import TrialRun

    for epochs in (200, 20):
        for seed in (0, 1):
            tags = {
                "sweep_id": "multirun/d",
                "optimizer": "adam",
                "compression": "none",
                FIXED_TAG: f"strategy.epochs={epochs}",
            }
            with TrialRun(tracking_uri, "sweeper", run_name=f"trial {epochs} {seed}", tags=tags) as run:
                run.log_params({"seed": seed, "strategy.epochs": epochs})
                run.log_results(
                    {
                        "test_score": 0.8 + 0.01 * seed,
                        "val_score": 0.8,
                        "size_bytes": 1000,
                        "latency_ms": 0.1,
                        "epochs_run": epochs,
                    }
                )
    config = OmegaConf.create(
        {
            "tracking": {"enabled": True, "uri": tracking_uri, "experiment": "sweeper"},
            "hydra": {"sweep": {"dir": "multirun/d"}},
        }
    )
    monkeypatch.chdir(tmp_path)  # the callback writes into the (relative) sweep dir
    ReportCallback().on_multirun_end(config)
    report_dir = tmp_path / "multirun" / "d" / "report"
    assert "strategy.epochs=20" in (report_dir / "report.md").read_text()
    assert "This report: `strategy.epochs=200`" in (report_dir / "sweep-2" / "report.md").read_text()
    client = MlflowClient(tracking_uri)
    (report,) = client.search_runs(
        [client.get_experiment_by_name("sweeper").experiment_id], filter_string="tags.sweeper_role = 'sweep'"
    )
    assert "sweep-2/report.md" in {a.path for a in client.list_artifacts(report.info.run_id, "sweep-2")}
    assert main(["--tracking-uri", tracking_uri, "--sweep", "multirun/d", "--out", str(tmp_path / "R")]) == 0
    assert f"another sweep under this sweep id: {tmp_path / 'R' / 'sweep-2' / 'report.html'}" in capsys.readouterr().out
