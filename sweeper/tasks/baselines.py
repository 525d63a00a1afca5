"""Reference numbers measured beside every model: what "good" means on the task.

A task names its baseline (:attr:`sweeper.data.Task.baseline`); each run logs its scores as
``baseline_val_score`` / ``baseline_test_score`` (the task's primary metric) with tag
``baseline`` naming it, and the report shows them next to the models. Each baseline sees
the training split only and scores validation and test like a model does.

* ``majority``: every sample gets the most frequent training class.
* ``popularity``: a ranking list's candidates ordered by how often training interactions hold them.
* ``unigram``: a language model that predicts every next token by its frequency in the training
  tokens (add-one smoothing): the perplexity a model must beat to have learned anything about order.
* ``kmer_logreg``: logistic regression on counts of 1-, 2- and 3-mers of a sequence's token ids
  (scikit-learn), the classic reference for sequence classification.

Example:
    >>> import numpy as np
    >>> from sweeper.data import Task
    >>> task = Task.from_arrays(np.random.rand(100, 3), np.r_[np.zeros(70), np.ones(30)].astype(int), seed=0)
    >>> round(baseline_scores(task)["baseline_test_score"], 2)  # accuracy of always saying 0
    0.7
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from sweeper.data import Task
from sweeper.scoring import METRICS

__all__ = ["BASELINES", "baseline_scores"]

PAD = 0  # token id 0 pads sequences in the built-in token tasks; it is not a k-mer


def _majority(task: Task, splits: list[Tensor]) -> list[Tensor]:
    counts = torch.bincount(task.y_train, minlength=task.num_classes)
    logits = torch.full((task.num_classes,), -1.0)
    logits[counts.argmax()] = 1.0
    return [logits.expand(*x.shape[: x.dim() - len(task.input_shape)], -1) for x in splits]


def _popularity(task: Task, splits: list[Tensor]) -> list[Tensor]:
    """Candidates scored by the item's count among the training positives (column 1 holds item ids)."""
    items = task.x_train[task.y_train == 1][:, 1]
    largest = max(int(items.max()), *(int(x[..., 1].max()) for x in splits))
    counts = torch.bincount(items, minlength=largest + 1).double()
    return [counts[x[..., 1]].unsqueeze(-1) for x in splits]


def _kmer_features(x: np.ndarray, vocab: int, columns: dict[int, int] | None) -> tuple[object, dict[int, int]]:
    from scipy.sparse import csr_matrix

    rows, codes = [], []
    for k in (1, 2, 3):
        grams = np.lib.stride_tricks.sliding_window_view(x, k, axis=1)  # (n, L - k + 1, k)
        valid = (grams != PAD).all(axis=2)
        code = (grams * vocab ** np.arange(k)).sum(axis=2) + k * vocab**3  # one code space per order
        r, c = np.nonzero(valid)
        rows.append(r)
        codes.append(code[r, c])
    row, code = np.concatenate(rows), np.concatenate(codes)
    if columns is None:
        columns = {int(c): i for i, c in enumerate(np.unique(code))}
    keep = np.array([c in columns for c in code.tolist()], dtype=bool)
    col = np.array([columns[c] for c in code[keep].tolist()], dtype=np.int64)
    matrix = csr_matrix((np.ones(len(col)), (row[keep], col)), shape=(len(x), len(columns)))
    return matrix, columns


def _kmer_logreg(task: Task, splits: list[Tensor]) -> list[Tensor]:
    """Fitted once on the training split, then scores each of ``splits``."""
    from sklearn.linear_model import LogisticRegression

    if task.x_train.is_floating_point() or task.x_train.dim() != 2:
        raise ValueError(f"baseline kmer_logreg needs integer sequences (n, length); task {task.name} has other inputs")
    vocab = max(int(x.max()) for x in (task.x_train, *splits)) + 1
    train, columns = _kmer_features(task.x_train.numpy(), vocab, None)
    model = LogisticRegression(max_iter=2000, C=1.0).fit(train, task.y_train.numpy())
    logits = []
    for x in splits:
        proba = np.full((len(x), task.num_classes), 1e-9)
        proba[:, model.classes_] = model.predict_proba(_kmer_features(x.numpy(), vocab, columns)[0])
        logits.append(torch.from_numpy(np.log(proba)))
    return logits


# (task, the splits' inputs) -> their logits; each sees the training split only
BASELINES: dict[str, Callable[[Task, list[Tensor]], list[Tensor]]] = {
    "majority": _majority,
    "popularity": _popularity,
    "kmer_logreg": _kmer_logreg,
}

_measured: dict[int, tuple[Task, dict[str, float]]] = {}  # id(task) -> (task, its scores), this process


def _unigram(task: Task, splits: list[Tensor], targets: list[Tensor]) -> list[float]:
    """The perplexity of each split's next tokens under the training tokens' smoothed frequencies."""
    counts = torch.bincount(task.y_train.reshape(-1), minlength=task.num_classes).double() + 1.0
    log_p = counts.log() - counts.sum().log()
    return [float(torch.exp(-log_p[y.reshape(-1)].mean())) for y in targets]


def baseline_scores(task: Task) -> dict[str, float]:
    """The task's baseline on validation and test: ``baseline_val_score``, ``baseline_test_score``.

    Measured once per task object in a process (trials of one process share their task).
    """
    if task.baseline is None:
        return {}
    if task.baseline not in [*BASELINES, "unigram"]:
        raise ValueError(f"Task.baseline={task.baseline!r}: allowed: {', '.join(BASELINES)}, unigram or None")
    known = _measured.get(id(task))
    if known is not None and known[0] is task:
        return known[1]
    if task.baseline == "unigram":  # scored directly: a split's logits over a vocabulary would not fit
        val_score, test_score = _unigram(task, [task.x_val, task.x_test], [task.y_val, task.y_test])
    else:
        metric = METRICS[task.score_metric]
        val, test = BASELINES[task.baseline](task, [task.x_val, task.x_test])
        val_score, test_score = metric.compute(val, task.y_val), metric.compute(test, task.y_test)
    scores = {"baseline_val_score": val_score, "baseline_test_score": test_score}
    _measured[id(task)] = task, scores
    return scores
