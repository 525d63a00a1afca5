"""The `Task` contract that every dataset plug-in returns (built-in tasks: :mod:`sweeper.tasks`).

A dataset plug-in is any callable named by `data._target_`. It receives the keyword
arguments of its config plus ``seed`` and returns a :class:`Task`::

    def make_task(*, seed: int, n: int = 500) -> Task:
        x, y = ...                      # numpy arrays or tensors
        return Task.from_arrays(x, y, seed=seed, name="mine")

A training split too large for memory is a *stream*: a ``torch.utils.data.Dataset`` of ``(x, y)``
tensor pairs read lazily (:mod:`sweeper.streams`), trained through a ``DataLoader`` with workers::

    def make_big_task(*, seed: int, path: str) -> Task:
        stream = NpyStream(f"{path}/x_train.npy", f"{path}/y_train.npy")
        return Task.streamed(stream, x_val, y_val, x_test, y_test, name="big")
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

__all__ = [
    "Items",
    "StreamItemError",
    "Task",
    "check_stream",
    "collate_items",
    "read_items",
    "stratified_split",
    "stream_fingerprint",
]

SAMPLE = 1024  # items of a stream held in memory as x_train / y_train (calibration, checks, baselines)


@dataclass(frozen=True)
class Task:
    """A supervised task split into train, validation and test tensors, with the metric it is judged by.

    Inputs are float32 features, or int64 token / item ids, with any per-sample shape
    (``input_shape``); labels are int64 class indices in ``[0, num_classes)``. Validation drives
    early stopping and search; test is only used for the final numbers.

    ``train_stream``: the training split read lazily (see :meth:`streamed`); ``x_train`` / ``y_train`` then
    hold its first items, an in-memory sample for calibration, shape checks and the baseline, while
    validation and test stay in memory (keep them bounded: a few thousand samples), and ``stream_workers``
    is the number of ``DataLoader`` worker processes that read it (0: the training process itself).

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
    train_stream: Dataset[tuple[Tensor, Tensor]] | None = None  # items (x, y); x_train/y_train: its first ones
    stream_workers: int = 2  # DataLoader worker processes reading train_stream

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
        if self.train_stream is not None:
            workers = self.stream_workers
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
                raise ValueError(f"Task.stream_workers={workers}: must be an integer >= 0")
            if self.x_train.dtype not in (torch.float32, torch.int64) or self.y_train.dtype != torch.int64:
                raise ValueError(
                    f"data: streamed training items are ({self.x_train.dtype}, {self.y_train.dtype}); need x float32 "
                    "features or int64 ids, y int64"
                )
            check_stream(self.train_stream, self.x_train, self.y_train, num_classes=self.num_classes)

    @property
    def train_size(self) -> int:
        """Samples in the training split: the stream's length, or the in-memory rows."""
        return len(self.x_train) if self.train_stream is None else len(self.train_stream)  # type: ignore[arg-type]

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
    def streamed(
        cls,
        stream: Dataset[tuple[Tensor, Tensor]],
        x_val: np.ndarray | Tensor,
        y_val: np.ndarray | Tensor,
        x_test: np.ndarray | Tensor,
        y_test: np.ndarray | Tensor,
        *,
        name: str = "custom",
        sample: int = SAMPLE,
        workers: int = 2,
        **task_fields: Any,
    ) -> Task:
        """A task that trains from ``stream``, a dataset of ``(x, y)`` tensor pairs read lazily.

        Its first ``sample`` items are read into ``x_train`` / ``y_train`` (so order the stream's items
        randomly, or the sample is one class); validation and test are in memory, integer inputs kept as
        int64 ids, anything else float32. ``num_classes`` defaults to the largest label seen plus one
        (the sample's, validation's, test's). ``task_fields``: ``metrics``, ``baseline``, ``source``,
        ``num_classes``, ``loss``.

        Example:
            >>> from torch.utils.data import TensorDataset
            >>> stream = TensorDataset(torch.rand(5000, 4), torch.arange(5000) % 3)
            >>> task = Task.streamed(stream, torch.rand(30, 4), torch.arange(30) % 3, torch.rand(30, 4),
            ...                      torch.arange(30) % 3, sample=100)
            >>> task.train_size, len(task.x_train), task.input_shape, task.num_classes
            (5000, 100, (4,), 3)
        """
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            raise ValueError(f"Task.streamed: sample={sample}: must be an integer >= 1")
        if len(stream) == 0:  # type: ignore[arg-type]
            raise ValueError("Task.streamed: the stream holds no items")
        x_train, y_train = read_items(stream, range(min(sample, len(stream))))  # type: ignore[arg-type]
        (x_va, y_va), (x_te, y_te) = (
            _as_tensors(x, y, split) for x, y, split in ((x_val, y_val, "val"), (x_test, y_test, "test"))
        )
        from sweeper.scoring import METRICS

        classes = 1 + max(int(y.max()) for y in (y_train, y_va, y_te))
        fields = _fields(task_fields, classes)
        primary = METRICS.get(fields["metrics"][0]) if fields.get("metrics") else None  # unknown: __post_init__ says
        ranking = primary is not None and primary.ranking
        for split, x in (("val", x_va), ("test", x_te)):
            if not ranking and x.shape[1:] != x_train.shape[1:]:
                raise ValueError(
                    f"Task.x_{split}: samples of shape {tuple(x.shape[1:])}, the stream's {tuple(x_train.shape[1:])}"
                )
        return cls(
            name, x_train, y_train, x_va, y_va, x_te, y_te, train_stream=stream, stream_workers=workers, **fields
        )

    def in_memory(self) -> Task:
        """This task with its whole training split read into ``x_train`` / ``y_train`` (no stream)."""
        if self.train_stream is None:
            return self
        x_train, y_train = read_items(self.train_stream, range(self.train_size))
        return replace(self, x_train=x_train, y_train=y_train, train_stream=None)

    @classmethod
    def _of(cls, name: str, parts: list[tuple[Tensor, Tensor]], num_classes: int, fields: dict[str, Any]) -> Task:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
        return cls(name, x_tr, y_tr, x_va, y_va, x_te, y_te, **_fields(fields, num_classes))


def _fields(fields: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """A task's optional fields as a plug-in passes them, with ``num_classes`` defaulted."""
    allowed = {"metrics", "baseline", "source", "num_classes", "loss"}
    if set(fields) - allowed:
        raise TypeError(f"Task: unknown field(s) {sorted(set(fields) - allowed)}; allowed: {sorted(allowed)}")
    fields = {"num_classes": num_classes, **fields}
    if "metrics" in fields:
        fields["metrics"] = tuple(fields["metrics"])
    return fields


def _as_tensors(x: np.ndarray | Tensor, y: np.ndarray | Tensor, split: str) -> tuple[Tensor, Tensor]:
    """An in-memory split as tensors: integer inputs as int64 ids, others float32; integer labels as int64."""
    x_t, y_t = torch.as_tensor(np.asarray(x)), torch.as_tensor(np.asarray(y))
    if y_t.is_floating_point() or y_t.is_complex():
        raise ValueError(f"Task.y_{split}: labels are {y_t.dtype}; need integer class ids")
    return (x_t.float() if x_t.is_floating_point() or x_t.dtype == torch.bool else x_t.long()), y_t.long()


class StreamItemError(ValueError):
    """An item of a streamed training split that is malformed, in one line naming the item.

    Raised in a ``DataLoader`` worker, it reaches the training process re-created from the worker's
    traceback (``torch.utils.data`` re-raises it that way); its message is then cut back to its own line.
    """

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        last = message.rstrip().splitlines()[-1] if message.strip() else message
        super().__init__(last.split(marker, 1)[1] if marker in last else last)


class Items(list[tuple[Tensor, Tensor]]):
    """A batch's items with the indices they were read at (a stream's ``__getitems__`` returns one), so
    :func:`collate_items` names a malformed item by its index in the stream."""

    def __init__(self, items: Sequence[tuple[Tensor, Tensor]], indices: Sequence[int]) -> None:
        super().__init__(items)
        self.indices = [int(i) for i in indices]


def _pair(item: Any, index: object) -> tuple[Tensor, Tensor]:
    if not (isinstance(item, tuple | list) and len(item) == 2 and all(isinstance(t, Tensor) for t in item)):
        raise StreamItemError(
            f"data: streamed training item {index} is a {type(item).__name__}; need an (x, y) tensor pair"
        )
    return item[0], item[1]


def collate_items(
    items: Sequence[tuple[Tensor, Tensor]], indices: Sequence[int] | None = None
) -> tuple[Tensor, Tensor]:
    """Stack a batch of ``(x, y)`` items into ``(inputs, targets)``: a ``DataLoader``'s ``collate_fn``.

    An item whose ``x`` or ``y`` differs from the first one's shape or dtype raises :class:`StreamItemError`
    (a ``ValueError``) in one line naming it by its index in the stream (``indices``, or those an
    :class:`Items` batch carries), else by its place in the batch.
    """
    indices = indices if indices is not None else getattr(items, "indices", None)
    names = list(indices) if indices is not None else [f"{k} of its batch" for k in range(len(items))]
    pairs = [_pair(item, name) for item, name in zip(items, names, strict=True)]
    if not pairs:
        raise StreamItemError("data: an empty batch of streamed training items")
    for key, column in (("x", 0), ("y", 1)):
        first = pairs[0][column]
        for name, pair in zip(names, pairs, strict=True):
            _check_like(
                pair[column], first.shape, first.dtype, f"data: streamed training item {name}: {key}", "the others"
            )
    return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])


def _check_like(t: Tensor, shape: torch.Size, dtype: torch.dtype, what: str, others: str) -> None:
    if t.shape != shape:
        raise StreamItemError(f"{what} has shape {tuple(t.shape)}, {others} {tuple(shape)}")
    if t.dtype != dtype:
        raise StreamItemError(f"{what} is {t.dtype}, {others} {dtype}")


def read_items(stream: Dataset[tuple[Tensor, Tensor]], indices: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Items of ``stream`` read in this process and stacked (:func:`collate_items`)."""
    getitems = getattr(stream, "__getitems__", None)
    items = getitems(list(indices)) if getitems else [stream[i] for i in indices]
    return collate_items(items, list(indices))


def _probe_indices(n: int, count: int = 5, seed: int = 0) -> list[int]:
    """The first item, the last one and ``count`` seeded-random ones of a stream of ``n`` (sorted, distinct)."""
    rng = np.random.default_rng(seed)
    return sorted({0, n - 1, *(int(i) for i in rng.integers(0, n, size=count))})


def check_stream(
    stream: Dataset[tuple[Tensor, Tensor]], x_sample: Tensor, y_sample: Tensor, *, num_classes: int | None = None
) -> None:
    """Read a few items of ``stream`` (first, last, seeded-random) and compare them with its in-memory sample.

    Raises:
        StreamItemError: an item whose ``x`` or ``y`` has another shape or dtype than the sample's, or a label
            outside ``[0, num_classes)``, in one line naming the item; a stream shorter than its sample.
    """
    n = len(stream)  # type: ignore[arg-type]
    if n < len(x_sample):
        raise StreamItemError(f"data: the training stream holds {n} items, fewer than its sample's {len(x_sample)}")
    for index in _probe_indices(n):
        x, y = _pair(stream[index], index)
        for key, t, like in (("x", x, x_sample), ("y", y, y_sample)):
            _check_like(t, like.shape[1:], like.dtype, f"data: streamed training item {index}: {key}", "the sample's")
        if num_classes is not None and bool(((y < 0) | (y >= num_classes)).any()):
            label = int(y.reshape(-1)[((y < 0) | (y >= num_classes)).reshape(-1)][0])
            raise StreamItemError(
                f"data: streamed training item {index} holds label {label}, outside [0, num_classes={num_classes})"
            )


def stream_fingerprint(stream: Dataset[tuple[Tensor, Tensor]]) -> str:
    """What tells one stream from another: its own ``fingerprint()`` (the streams of :mod:`sweeper.streams`:
    their files' paths, sizes and modification times), else a digest of its length and probed items."""
    own = getattr(stream, "fingerprint", None)
    if callable(own):
        return f"{type(stream).__qualname__}:{own()}"
    n = len(stream)  # type: ignore[arg-type]
    digest = hashlib.sha256(f"{type(stream).__qualname__}:{n}".encode())
    for index in _probe_indices(n):
        for t in _pair(stream[index], index):
            digest.update(str((tuple(t.shape), t.dtype)).encode())
            digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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
