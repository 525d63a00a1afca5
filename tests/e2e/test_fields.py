"""The four fields' presets from the command line, and a user's task with a published test split."""

from __future__ import annotations

from conftest import argv

from sweeper.tracking.results import list_sweeps, load_runs

TINY = [
    *argv("strategy.epochs=1 measure.latency_seconds=0.01"),
    *argv("+options.data.reviews.n_samples=600 +options.data.mnist.n_samples=600"),
]


def _runs(tmp_path):
    return load_runs(sweep_id="latest", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_each_fields_preset_leaves_a_finished_run_scored_by_its_own_metric(run_cli, tmp_path):
    # One sampled negative per MovieLens interaction, not four: the task is built twice (preflight, trial)
    # by a per-pair sampling loop; ranking the held-out item among 100 candidates is unchanged.
    proc = run_cli(
        *argv("-m experiment=vision,text,recsys,bio +options.data.movielens.negatives=1"), *TINY, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _runs(tmp_path).set_index("data")
    expected = {"mnist": "accuracy", "reviews": "macro_f1", "movielens": "ndcg_at_10", "peptides": "auc"}
    assert set(runs.index) == set(expected) and (runs["status"] == "FINISHED").all()
    for data, metric in expected.items():
        run = runs.loc[data]
        assert run["score_metric"] == metric and run["test_score"] == run[f"test_{metric}"]
        assert 0 <= run["val_score"] <= 1 and 0 <= run["baseline_test_score"] <= 1
    assert runs.loc["movielens", "test_hr_at_10"] >= runs.loc["movielens", "test_ndcg_at_10"]  # HR@10 >= NDCG@10
    assert "test_ndcg_at_10" in proc.stdout and "test_macro_f1" in proc.stdout  # the trial lines name the metric


def test_a_quantized_hugging_face_encoder_is_smaller_and_the_report_speaks_macro_f1(run_cli, tmp_path):
    # The report under test is its text; the end-of-sweep latency round (its own tests) is left out.
    no_round = "hydra.callbacks.report.latency_rounds=0"
    proc = run_cli(*argv("-m experiment=text compression=none,quantize"), *TINY, no_round, report=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _runs(tmp_path).set_index("compression")
    assert (runs["status"] == "FINISHED").all() and set(runs.index) == {"none", "quantize"}
    assert runs.loc["quantize", "size_bytes"] < 0.5 * runs.loc["none", "size_bytes"]
    (sweep_id,) = list_sweeps("sweeper", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    report = (tmp_path / sweep_id / "report" / "report.md").read_text()
    assert "test macro-F1 (%)" in report and "test accuracy" not in report
    assert "baseline: majority" in report  # the task's reference sits in the ranking


def test_a_users_task_with_a_published_test_split_and_its_own_metric(run_cli, tmp_path):
    (tmp_path / "published.py").write_text(
        "import numpy as np\n"
        "from sweeper.data import Task\n\n"
        "def make_task(*, seed):\n"
        "    rng = np.random.default_rng(0)  # the publisher's data: fixed, whatever the seed\n"
        "    y = (np.arange(500) % 5 == 0).astype(int)  # 20 % positives\n"
        "    x = rng.normal(size=(500, 4)) + 2.0 * y[:, None]\n"
        "    return Task.from_splits(x[:400], y[:400], x[400:], y[400:], seed=seed, metrics=['macro_f1', 'auc'])\n"
    )
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "published.yaml").write_text("_target_: published.make_task\n")
    proc = run_cli(*argv("--config-dir conf data=published model=mlp strategy.epochs=20 measure.latency_seconds=0.01"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = load_runs(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").iloc[0]
    assert run["test_samples"] == 100 and run["train_samples"] + run["val_samples"] == 400  # test kept as published
    assert run["score_metric"] == "macro_f1" and run["test_score"] == run["test_macro_f1"] > 0.8
    assert run["baseline_test_score"] < 0.5  # majority class: macro-F1 of one class out of two
