"""The language field: next-token prediction on Python's help topics, scored by perplexity (lower is better)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import compose_config

from sweeper.scoring import METRICS
from sweeper.tasks.baselines import baseline_scores
from sweeper.tasks.language import lm_text, split_documents
from sweeper.trial.context import JobContext
from sweeper.trial.run import run

TINY_LM = ["data=lm_text", "model=tiny_llama", "data.length=32", "data.vocab_size=500", "data.eval_windows=16"]


def test_whole_documents_go_to_one_split_and_the_targets_are_the_next_tokens():
    train, val, test = split_documents(0, 0.15, 0.15)
    assert not (set(train) & set(val)) and not (set(train) & set(test)) and not (set(val) & set(test))
    assert len(train) > 3 * (len(val) + len(test)) / 2 and split_documents(0, 0.15, 0.15)[2] == test
    assert split_documents(1, 0.15, 0.15)[2] != test  # the seed draws the documents
    task = lm_text(seed=0, length=32, vocab_size=500, eval_windows=8)
    assert task.x_train.shape[1] == 32 and task.x_val.shape == (8, 32) and task.num_classes <= 500
    flat_x, flat_y = task.x_train.reshape(-1), task.y_train.reshape(-1)
    assert torch.equal(flat_x[1:], flat_y[:-1])  # y is x one token later, across windows too
    assert task.score_metric == "perplexity" and not task.higher_is_better and task.sequence


def test_perplexity_is_the_exponent_of_the_mean_next_token_loss():
    vocab = 50
    uniform = torch.zeros(2, 7, vocab)
    targets = torch.randint(0, vocab, (2, 7))
    assert METRICS["perplexity"].compute(uniform, targets) == pytest.approx(vocab)
    sure = torch.full((2, 7, vocab), -30.0).scatter(2, targets[..., None], 30.0)
    assert METRICS["perplexity"].compute(sure, targets) == pytest.approx(1.0)
    assert METRICS["perplexity"].direction == "minimize" and METRICS["token_accuracy"].compute(sure, targets) == 1.0


def test_a_tiny_llama_learns_the_text_below_its_unigram_baseline(tmp_path):
    task = lm_text(seed=0, length=32, vocab_size=500, eval_windows=16)
    unigram = baseline_scores(task)["baseline_test_score"]
    assert 30 < unigram < 500  # the tokens' frequencies alone
    result = run(compose_config(*TINY_LM, "strategy.epochs=2", "optimizer.lr=0.003"), JobContext.standalone(tmp_path))
    metrics = result.metrics
    assert math.isfinite(metrics["test_score"]) and metrics["test_score"] == metrics["test_perplexity"]
    assert metrics["test_score"] < unigram and metrics["baseline_test_score"] == pytest.approx(unigram)
    assert metrics["best_val_score"] <= result.trained.result.history[0]["val_score"]  # the lowest is the best
