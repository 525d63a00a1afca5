"""The task-defined metrics against hand computations and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sweeper.scoring import METRICS, evaluate_scores, metric_label


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_and_auc_agree_with_scikit_learn(seed):
    from sklearn.metrics import f1_score, roc_auc_score

    gen = torch.Generator().manual_seed(seed)
    logits, labels = torch.randn(200, 2, generator=gen), torch.randint(0, 2, (200,), generator=gen)
    logits[:, 1] += labels * 0.8  # informative, not perfect
    expected_f1 = f1_score(labels.numpy(), logits.argmax(1).numpy(), average="macro")
    expected_auc = roc_auc_score(labels.numpy(), torch.softmax(logits, 1)[:, 1].numpy())
    assert METRICS["macro_f1"].compute(logits, labels) == pytest.approx(expected_f1)
    assert METRICS["auc"].compute(logits, labels) == pytest.approx(expected_auc)


def test_ranking_metrics_follow_the_rank_of_the_relevant_candidate():
    # three lists of 12 candidates: the relevant one (index 0) ranks 1st, 3rd and 12th
    scores = torch.arange(12, 0, -1, dtype=torch.float32).repeat(3, 1)
    scores[1, 0] = 10.0  # below candidate 1 (11), tied with candidate 2 (10): a tie counts against it -> rank 3
    scores[2, 0] = -1.0  # last -> rank 12, outside the top 10
    logits = torch.stack([torch.zeros_like(scores), scores], dim=-1)
    y = torch.zeros(3, dtype=torch.long)
    assert METRICS["hr_at_10"].compute(logits, y) == pytest.approx(2 / 3)
    assert METRICS["ndcg_at_10"].compute(logits, y) == pytest.approx((1 + 1 / math.log2(4)) / 3)


def test_candidate_lists_are_scored_by_a_model_of_single_pairs():
    model = torch.nn.Linear(2, 2)
    x = torch.randn(5, 7, 2)  # 5 lists of 7 (user, item)-shaped inputs
    scores = evaluate_scores(model, x, torch.zeros(5, dtype=torch.long), ("ndcg_at_10",), input_ndim=1)
    assert 0 < scores["ndcg_at_10"] <= 1


def test_labels_name_the_metric():
    assert metric_label("ndcg_at_10") == "NDCG@10" and metric_label(None) == "accuracy"
    assert all(
        0 <= METRICS[m].compute(torch.randn(50, 2), torch.randint(0, 2, (50,))) <= 1 for m in ("accuracy", "auc")
    )
    assert np.isnan(METRICS["auc"].compute(torch.randn(4, 2), torch.ones(4, dtype=torch.long)))  # one class: undefined


def test_a_language_model_scored_window_by_window_gets_the_perplexity_of_one_pass():
    from sweeper.scoring import _sequence_scores, sequence_batch

    torch.manual_seed(0)
    vocabulary, length = 50, 12
    model = torch.nn.Sequential(torch.nn.Embedding(vocabulary, 16), torch.nn.Linear(16, vocabulary)).eval()
    x = torch.randint(0, vocabulary, (7, length))
    y = torch.randint(0, vocabulary, (7, length))
    with torch.no_grad():
        logits = model(x)
    expected = {name: METRICS[name].compute(logits, y) for name in ("perplexity", "token_accuracy")}
    for batch in (None, 1, 3, 7):
        got = _sequence_scores(model, x, y, ("perplexity", "token_accuracy"), batch=batch)
        assert got["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-6)
        assert got["token_accuracy"] == expected["token_accuracy"]
    assert sequence_batch(256, 49_152) == 1  # SmolLM2's windows: 48 MiB of logits each, one at a time
    assert sequence_batch(length, vocabulary) == 8
