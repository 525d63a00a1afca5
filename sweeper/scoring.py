"""Task-defined metrics: how a model's outputs on a split become the trial's score.

A task names its metrics (:attr:`sweeper.data.Task.metrics`, the first one primary). Every
run logs the primary one as ``val_score`` / ``test_score`` and each one under its own name
(``test_accuracy``, ``test_macro_f1``, ``test_auc``, ``test_ndcg_at_10``, ``test_perplexity``),
with tag ``score_metric`` naming the primary and ``score_direction`` saying whether higher is
better (``maximize``: accuracy, F1, AUC, NDCG, in [0, 1]) or lower (``minimize``: perplexity,
in [1, vocabulary]). The score is always the metric as it is: nothing is negated or rescaled;
what selects or ranks honours its direction.

Language-model metrics (``sequence``) read logits ``(n, length, vocabulary)`` and the next token
of every position ``(n, length)``; they are computed batch by batch, never holding a split's logits.

Classification metrics read logits of shape ``(n, classes)`` and labels ``(n,)``. Ranking
metrics read a candidate list per query: logits ``(n, candidates, classes)`` (the last class's
logit is the relevance score) and ``y`` the index of the relevant candidate in each list
(leave-one-out evaluation with sampled negatives; ties count against the relevant item).

Example:
    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    >>> labels = torch.tensor([0, 1, 1, 1])
    >>> round(METRICS["accuracy"].compute(logits, labels), 3), round(METRICS["macro_f1"].compute(logits, labels), 3)
    (0.75, 0.733)
    >>> round(METRICS["auc"].compute(logits, labels), 3)
    0.667
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["METRICS", "Metric", "evaluate_scores", "metric_label", "model_outputs"]


@dataclass(frozen=True)
class Metric:
    """A score computed from a split's logits and targets."""

    name: str  # the metric's key: test_<name>, val_<name>
    label: str  # how reports write it: "accuracy", "macro-F1", "NDCG@10"
    compute: Callable[[Tensor, Tensor], float]
    ranking: bool = False  # reads candidate lists (n, candidates, classes)
    higher_is_better: bool = True
    sequence: bool = False  # a language model's: logits (n, length, vocabulary), targets (n, length)

    @property
    def direction(self) -> str:
        """``maximize`` or ``minimize``, as a search names it."""
        return "maximize" if self.higher_is_better else "minimize"


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return (logits.argmax(dim=1) == y).float().mean().item()


def _macro_f1(logits: Tensor, y: Tensor) -> float:
    """Unweighted mean of the per-class F1 over the classes present in ``y`` or predicted."""
    predicted = logits.argmax(dim=1)
    classes = torch.unique(torch.cat([y, predicted]))
    scores = []
    for c in classes:
        tp = ((predicted == c) & (y == c)).sum().item()
        fp = ((predicted == c) & (y != c)).sum().item()
        fn = ((predicted != c) & (y == c)).sum().item()
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(sum(scores) / len(scores))


def _auc(logits: Tensor, y: Tensor) -> float:
    """Area under the ROC curve of the positive class (label 1): the Mann-Whitney statistic, ties halved."""
    if logits.shape[1] != 2:
        raise ValueError(f"metric auc needs 2 classes; the model outputs {logits.shape[1]}")
    score = torch.log_softmax(logits.double(), dim=1)[:, 1]
    pos, neg = score[y == 1], score[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    greater = (pos[:, None] > neg[None, :]).double().sum() + 0.5 * (pos[:, None] == neg[None, :]).double().sum()
    return (greater / (len(pos) * len(neg))).item()


def _rank_of_relevant(logits: Tensor, y: Tensor) -> Tensor:
    """0-based rank of each list's relevant candidate (candidates scoring at least as high rank before it)."""
    score = logits[..., -1] - logits[..., 0] if logits.shape[-1] > 1 else logits[..., 0]
    relevant = score.gather(1, y[:, None])
    return (score >= relevant).sum(dim=1) - 1


def _hit_rate_at_10(logits: Tensor, y: Tensor) -> float:
    return (_rank_of_relevant(logits, y) < 10).float().mean().item()


def _ndcg_at_10(logits: Tensor, y: Tensor) -> float:
    rank = _rank_of_relevant(logits, y).double()
    gain = torch.where(rank < 10, 1.0 / torch.log2(rank + 2.0), torch.zeros_like(rank))
    return gain.mean().item()


def _token_sums(logits: Tensor, y: Tensor) -> tuple[float, float, int]:
    """(summed next-token negative log-likelihood in nats, correct argmax predictions, tokens)."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    targets = y.reshape(-1)
    nll = torch.nn.functional.cross_entropy(flat, targets, reduction="sum").item()
    return nll, (flat.argmax(dim=1) == targets).sum().item(), targets.numel()


def _perplexity(logits: Tensor, y: Tensor) -> float:
    nll, _, tokens = _token_sums(logits, y)
    return math.exp(nll / tokens)


def _token_accuracy(logits: Tensor, y: Tensor) -> float:
    _, correct, tokens = _token_sums(logits, y)
    return correct / tokens


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "accuracy", _accuracy),
        Metric("macro_f1", "macro-F1", _macro_f1),
        Metric("auc", "AUC", _auc),
        Metric("ndcg_at_10", "NDCG@10", _ndcg_at_10, ranking=True),
        Metric("hr_at_10", "HR@10", _hit_rate_at_10, ranking=True),
        Metric("perplexity", "perplexity", _perplexity, higher_is_better=False, sequence=True),
        Metric("token_accuracy", "next-token accuracy", _token_accuracy, sequence=True),
    )
}


def metric_label(name: str | None) -> str:
    """How reports name a metric key (``ndcg_at_10`` -> ``NDCG@10``); unknown keys as they are."""
    if not isinstance(name, str) or not name:
        return "accuracy"
    return METRICS[name].label if name in METRICS else name


@torch.no_grad()
def model_outputs(model: nn.Module, x: Tensor, input_ndim: int, batch_size: int = 4096) -> Tensor:
    """The model's outputs for ``x``; leading dimensions beyond one sample's (candidate lists) are kept."""
    lead = x.shape[: x.dim() - input_ndim]
    flat = x.reshape(-1, *x.shape[x.dim() - input_ndim :])
    parts = [model(flat[start : start + batch_size]) for start in range(0, len(flat), batch_size)]
    out = torch.cat(parts)
    return out.reshape(*lead, *out.shape[1:])


def evaluate_scores(
    model: nn.Module, x: Tensor, y: Tensor, metrics: tuple[str, ...], *, input_ndim: int, batch_size: int = 4096
) -> dict[str, float]:
    """Each of ``metrics`` on ``(x, y)`` from one pass of ``model`` (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    try:
        if METRICS[metrics[0]].sequence:
            return _sequence_scores(model, x, y, metrics)
        logits = model_outputs(model, x, input_ndim, batch_size)
    finally:
        model.train(was_training)
    return {name: METRICS[name].compute(logits, y) for name in metrics}


LOGITS_BYTES = 64 * 2**20  # a language model is scored on at most this many bytes of float32 logits at once


def sequence_batch(length: int, vocabulary: int, *, most: int = 8, budget: int = LOGITS_BYTES) -> int:
    """Windows a language model is scored on at once: at most ``most``, and as many as keep their float32
    logits within ``budget`` bytes (at least one).

    Example:
        >>> sequence_batch(256, 49_152), sequence_batch(64, 512)
        (1, 8)
    """
    return max(1, min(most, budget // max(1, 4 * length * vocabulary)))


@torch.no_grad()
def _sequence_scores(
    model: nn.Module, x: Tensor, y: Tensor, metrics: tuple[str, ...], batch: int | None = None
) -> dict[str, float]:
    """A language model's metrics over all tokens of the split, summed batch by batch: the logits of a whole
    split of a 49k-token vocabulary would not fit in memory, and those of 8 windows of 256 tokens take 400 MB
    (twice that with the softmax). ``batch`` None: the first window is scored alone and its logits decide how
    many windows the next batches hold (:func:`sequence_batch`: one at a time for such a model)."""
    nll = correct = 0.0
    tokens = 0
    start = 0
    while start < len(x):
        size = batch if batch is not None else 1
        logits = model(x[start : start + size])
        part_nll, part_correct, part_tokens = _token_sums(logits, y[start : start + size])
        if batch is None:
            batch = sequence_batch(logits.shape[1], logits.shape[-1])
        del logits
        nll, correct, tokens = nll + part_nll, correct + part_correct, tokens + part_tokens
        start += size
    totals = {"perplexity": math.exp(nll / tokens), "token_accuracy": correct / tokens}
    unknown = [name for name in metrics if name not in totals]
    if unknown:
        raise ValueError(
            f"Task.metrics: {', '.join(unknown)} cannot score a language model; allowed: {', '.join(totals)}"
        )
    return {name: totals[name] for name in metrics}
