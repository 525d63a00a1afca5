"""The `Task` contract that every dataset plug-in returns (built-in tasks: :mod:`sweeper.tasks`).

A dataset plug-in is any callable named by `data._target_`. It receives the keyword
arguments of its config plus ``seed`` and returns a :class:`Task`::

    def make_task(*, seed: int, n: int = 500) -> Task:
        x, y = ...                      # numpy arrays or tensors
        return Task.from_arrays(x, y, seed=seed, name="mine")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["Task", "stratified_split"]


@dataclass(frozen=True)
class Task:
    """A supervised task split into train, validation and test tensors, with the metric it is judged by.

    Inputs are float32 features, or int64 token / item ids, with any per-sample shape
    (``input_shape``); labels are int64 class indices in ``[0, num_classes)``. Validation drives
    early stopping and search; test is only used for the final numbers.

    ``metrics`` (keys of :data:`sweeper.scoring.METRICS`, the first one primary) say how the
    model's outputs are scored; accuracy by default. A ranking task's validation and test
    inputs are candidate lists, ``(queries, candidates, *input_shape)``, with ``y`` the index of
    the relevant candidate. A language-modelling task (``perplexity``) holds token windows
    ``(n, length)`` and, as ``y``, the next token of every position ``(n, length)``; its model
    returns logits ``(n, length, num_classes)``, ``num_classes`` being the vocabulary. ``loss`` trains the model (cross-entropy when ``None``). ``baseline`` names the reference the run measures beside the model
    (:mod:`sweeper.tasks.baselines`); ``source`` says where the data comes from (and its licence).
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    metrics: tuple[str, ...] = ("accuracy",)
    baseline: str | None = "majority"
    source: str = ""
    loss: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None  # (logits, inputs, targets); cross-entropy

    def __post_init__(self) -> None:
        from sweeper.scoring import METRICS

        unknown = [m for m in self.metrics if m not in METRICS]
        if not self.metrics or unknown:
            raise ValueError(f"Task.metrics={list(self.metrics)}: allowed: {', '.join(METRICS)}")
        if self.num_classes < 2:
            raise ValueError(f"Task.num_classes={self.num_classes}: need at least 2 classes")
        ranking = METRICS[self.metrics[0]].ranking
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, Tensor) or not isinstance(y, Tensor):
                raise TypeError(f"Task.x_{split}/y_{split} must be torch tensors")
            if len(x) != len(y) or len(x) == 0:
                raise ValueError(f"Task split '{split}' has {len(x)} inputs and {len(y)} labels; need equal and > 0")
            if METRICS[self.metrics[0]].sequence and y.shape != x.shape:
                raise ValueError(
                    f"Task.y_{split}: {tuple(y.shape)}; a language model's targets are x's shape {tuple(x.shape)}"
                )
            candidates = split != "train" and ranking
            _check_inputs(split, x)
            _check_labels(split, y, x.shape[1] if candidates else self.num_classes, "candidate" if candidates else "")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample (what the model receives per row)."""
        return tuple(self.x_train.shape[1:])

    @property
    def score_metric(self) -> str:
        """The primary metric's key: what ``val_score`` / ``test_score`` are."""
        return self.metrics[0]

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger score is a better one (accuracy) or a smaller one (perplexity)."""
        from sweeper.scoring import METRICS

        return METRICS[self.score_metric].higher_is_better

    @property
    def sequence(self) -> bool:
        """A language-modelling task: one target per input position, logits per position."""
        from sweeper.scoring import METRICS

        return METRICS[self.score_metric].sequence

    def inputs(self, split: str) -> Tensor:
        """A split's model inputs, one sample per row (a ranking split's candidate lists flattened)."""
        x: Tensor = getattr(self, f"x_{split}")
        return x.reshape(-1, *self.input_shape)

    def evaluate(self, model: nn.Module, split: str, *, device: torch.device | str | None = None) -> dict[str, float]:
        """Each of the task's metrics for ``model`` on ``split`` (``val`` or ``test``), primary first."""
        from sweeper.scoring import evaluate_scores

        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        if device is not None:
            x, y = x.to(device), y.to(device)
        return evaluate_scores(model, x, y, self.metrics, input_ndim=len(self.input_shape))

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray | Tensor,
        y: np.ndarray | Tensor,
        *,
        seed: int,
        name: str = "custom",
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        **task_fields: Any,
    ) -> Task:
        """Split arrays into stratified train/val/test parts, reproducibly from ``seed``.

        Integer ``x`` (token or item ids) is kept as int64, anything else becomes float32.
        ``task_fields``: ``metrics``, ``baseline``, ``source``, ``num_classes``, ``loss``.

        Example:
            >>> import numpy as np
            >>> x, y = np.random.rand(100, 4), np.arange(100) % 2
            >>> task = Task.from_arrays(x, y, seed=0)
            >>> len(task.x_train), len(task.x_val), len(task.x_test)
            (64, 16, 20)
        """
        _check_fraction("val_fraction", val_fraction)
        _check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1:
            raise ValueError(f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction}: must be < 1")
        x_np, y_np = _as_arrays(x, y, "from_arrays")
        train, val, test = stratified_split(y_np, val_fraction, test_fraction, seed=seed)
        parts = [(torch.from_numpy(x_np[ids]), torch.from_numpy(y_np[ids])) for ids in (train, val, test)]
        return cls._of(name, parts, int(y_np.max()) + 1, task_fields)

    @classmethod
    def from_splits(
        cls,
        x_train: np.ndarray | Tensor,
        y_train: np.ndarray | Tensor,
        x_test: np.ndarray | Tensor,
        y_test: np.ndarray | Tensor,
        *,
        seed: int,
        name: str = "custom",
        val_fraction: float = 0.15,
        **task_fields: Any,
    ) -> Task:
        """Keep the test split its publisher fixed; carve a stratified validation split from train.

        Example:
            >>> import numpy as np
            >>> x, y = np.random.rand(100, 4), np.arange(100) % 2
            >>> task = Task.from_splits(x[:80], y[:80], x[80:], y[80:], seed=0, val_fraction=0.25)
            >>> len(task.x_train), len(task.x_val), len(task.x_test)
            (60, 20, 20)
        """
        _check_fraction("val_fraction", val_fraction)
        x_tr, y_tr = _as_arrays(x_train, y_train, "from_splits (train)")
        x_te, y_te = _as_arrays(x_test, y_test, "from_splits (test)")
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise ValueError(f"Task.from_splits: train samples have shape {x_tr.shape[1:]}, test {x_te.shape[1:]}")
        train, val, _ = stratified_split(y_tr, val_fraction, 0.0, seed=seed)
        parts = [(torch.from_numpy(x_tr[ids]), torch.from_numpy(y_tr[ids])) for ids in (train, val)]
        parts.append((torch.from_numpy(x_te), torch.from_numpy(y_te)))
        return cls._of(name, parts, int(max(y_tr.max(), y_te.max())) + 1, task_fields)

    @classmethod
    def _of(cls, name: str, parts: list[tuple[Tensor, Tensor]], num_classes: int, fields: dict[str, Any]) -> Task:
        allowed = {"metrics", "baseline", "source", "num_classes", "loss"}
        if set(fields) - allowed:
            raise TypeError(f"Task: unknown field(s) {sorted(set(fields) - allowed)}; allowed: {sorted(allowed)}")
        fields = {"num_classes": num_classes, **fields}
        if "metrics" in fields:
            fields["metrics"] = tuple(fields["metrics"])
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
        return cls(name, x_tr, y_tr, x_va, y_va, x_te, y_te, **fields)


def _check_fraction(key: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"data.{key}={value}: must be in (0, 1)")


def _as_arrays(x: np.ndarray | Tensor, y: np.ndarray | Tensor, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as float32 (or int64 ids), ``y`` as int64 class ids: float labels must be whole numbers."""
    x_np = np.asarray(x)
    x_np = x_np.astype(np.int64 if np.issubdtype(x_np.dtype, np.integer) else np.float32)  # ids stay ids
    y_raw = np.asarray(y)
    if x_np.ndim < 2 or y_raw.ndim != 1 or len(x_np) != len(y_raw):
        raise ValueError(f"Task.{where} needs x of shape (n, ...) and y of shape (n,); got {x_np.shape}, {y_raw.shape}")
    if not (np.issubdtype(y_raw.dtype, np.integer) or np.issubdtype(y_raw.dtype, np.bool_)):
        y_float = y_raw.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(y_float) | (y_float != np.round(y_float)))
        if len(bad):
            raise ValueError(
                f"Task.{where}: labels must be integer class ids; row {bad[0]} holds {y_raw[bad[0]]} "
                "(a regression target? the tasks here are classification or ranking)"
            )
    return x_np, y_raw.astype(np.int64)


def _check_inputs(split: str, x: Tensor) -> None:
    """No NaN or infinity in float inputs, no negative ids in integer ones: named by split and row."""
    if x.is_floating_point():
        bad = ~torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
        what = "NaN or infinity"
    else:
        bad = (x.reshape(len(x), -1) < 0).any(dim=1)
        what = "a negative id"
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0])
        raise ValueError(f"Task.x_{split}: row {row} holds {what} ({int(bad.sum())} rows in all); clean the data first")


def _check_labels(split: str, y: Tensor, limit: int, kind: str) -> None:
    """Integer labels in ``[0, limit)``: a class index, or a ranking list's relevant-candidate index."""
    if y.is_floating_point():
        raise ValueError(f"Task.y_{split}: labels are {y.dtype}; need int64 class ids")
    bad = ((y < 0) | (y >= limit)).reshape(len(y), -1)
    if bool(bad.any()):
        row = int(torch.nonzero(bad.any(dim=1))[0])
        label = int(y.reshape(len(y), -1)[row][bad[row]][0])
        allowed = f"[0, {limit}) ({kind} index)" if kind else f"[0, num_classes={limit})"
        raise ValueError(f"Task.y_{split}: row {row} holds label {label}, outside {allowed}")


def stratified_split(
    y: np.ndarray, val_fraction: float, test_fraction: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train / val / test with each class in the same proportions, shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        parts[2].append(members[:n_test])
        parts[1].append(members[n_test : n_test + n_val])
        parts[0].append(members[n_test + n_val :])
    train, val, test = (rng.permutation(np.concatenate(p)) for p in parts)
    if min(len(train), len(val)) == 0 or (test_fraction > 0 and len(test) == 0):
        raise ValueError(
            f"data: {len(y)} samples are too few for val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    return train, val, test
