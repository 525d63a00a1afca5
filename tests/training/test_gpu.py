"""Training on CUDA devices: mixed precision and data parallel over NCCL (skipped on a machine without them)."""

from __future__ import annotations

import pytest
from conftest import TINY_TASK, compose_config, run_if

from sweeper.trial.context import JobContext
from sweeper.trial.run import run


@run_if(min_gpus=1)
@pytest.mark.parametrize("precision", ["32", "bf16", "fp16"])
def test_a_trial_trains_on_cuda_in_each_precision(tmp_path, precision):
    cfg = compose_config(*TINY_TASK, "device=cuda", f"strategy.precision={precision}", "strategy.epochs=5")
    result = run(cfg, JobContext.standalone(tmp_path))
    history = result.trained.result.history
    assert result.plan.device.type == "cuda" and history[-1]["train_loss"] < history[0]["train_loss"]
    assert result.metrics["test_accuracy"] > 0.5


@run_if(min_gpus=1)
def test_the_language_field_fine_tunes_in_bf16_on_cuda(tmp_path):
    cfg = compose_config(
        "data=lm_text", "model=tiny_llama", "data.length=32", "data.vocab_size=500", "data.eval_windows=16",
        "device=cuda", "strategy.precision=bf16", "strategy.epochs=2", "optimizer.lr=0.003",
    )  # fmt: skip
    result = run(cfg, JobContext.standalone(tmp_path))
    assert result.metrics["test_score"] < result.metrics["baseline_test_score"]  # below the unigram perplexity


@run_if(min_gpus=2)
def test_two_gpus_train_data_parallel_over_nccl(tmp_path):
    one = run(compose_config(*TINY_TASK, "device=cuda", "strategy.epochs=3"), JobContext.standalone(tmp_path / "a"))
    two = run(
        compose_config(*TINY_TASK, "device=cuda", "nproc=2", "strategy.epochs=3"), JobContext.standalone(tmp_path / "b")
    )
    losses = [row["train_loss"] for row in two.trained.result.history]
    assert losses == pytest.approx([row["train_loss"] for row in one.trained.result.history], rel=1e-3)
