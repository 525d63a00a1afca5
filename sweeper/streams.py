"""Training splits read lazily from disk, as ``torch.utils.data`` datasets of ``(x, y)`` tensor pairs.

A streamed task (:meth:`sweeper.data.Task.streamed`) trains from one of these through a ``DataLoader``
with worker processes, so memory stays flat however large the files:

* :class:`NpyStream`: rows of an inputs ``.npy`` file and a labels ``.npy`` file (optionally a subset of
  rows, in a given order; integer pixels scaled to floats on the fly);
* :class:`TokenWindows`: windows of ``length`` tokens over a 1-D token ``.npy``, each with its next tokens;
* :class:`FileItems`: one file per item (``root/<class>/<item>.npy``, or any loader of a file).

Rows are read with ``os.pread`` at the offsets the ``.npy`` header gives (:mod:`numpy.lib.format`), not
through ``np.memmap``: the pages of a memory map that a process touches count in its resident memory, so
one epoch over a memory-mapped file grows RSS by the file's size, while a read lands in the kernel's page
cache, which the system reclaims without the process holding it. Each process opens a file on its first
read, so a stream pickles into ``DataLoader`` workers without an open handle. :func:`write_npy` writes
such a file chunk by chunk (a conversion that holds one chunk at a time).

Example:
    >>> import tempfile, numpy as np
    >>> root = tempfile.mkdtemp()
    >>> np.save(f"{root}/x.npy", np.arange(12, dtype=np.uint8).reshape(4, 3))
    >>> np.save(f"{root}/y.npy", np.array([0, 1, 0, 1]))
    >>> stream = NpyStream(f"{root}/x.npy", f"{root}/y.npy", divide_by=2.0)
    >>> x, y = stream[1]
    >>> x.tolist(), int(y), len(stream)
    ([1.5, 2.0, 2.5], 1, 4)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sweeper.data import Items

__all__ = ["STREAM_CACHE", "FileItems", "NpyArray", "NpyStream", "Stream", "TokenWindows", "write_npy"]

STREAM_CACHE = ".sweeper_cache/streams"  # built-in tasks' files converted once for streaming


class NpyArray:
    """The rows of a ``.npy`` file, read on demand with ``os.pread`` (no memory map, no file read whole).

    ``shape``, ``dtype`` and ``offset`` (where the data starts) come from the file's header; the file
    must be C-ordered and hold no Python objects.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd: int | None = None  # opened by the first read in each process
        self._pid = 0
        self.path = Path(path).expanduser().resolve()
        with self.path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"{self.path}: .npy format {version}; need 1.0 or 2.0 (np.save writes them)")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read(f)
            self.offset = f.tell()
        if fortran_order or dtype.hasobject or not shape:
            raise ValueError(
                f"{self.path}: need a C-ordered array of numbers with rows (np.save(np.ascontiguousarray(a)))"
            )
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype[Any] = dtype
        self.row_bytes = dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": 0}  # each process opens the file itself

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)

    def _handle(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker reopens rather than share
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def read(self, begin: int, end: int) -> np.ndarray:
        """Rows ``begin`` to ``end`` (exclusive), in a fresh writable array."""
        if not 0 <= begin <= end <= len(self):
            raise IndexError(f"{self.path}: rows {begin}:{end} outside its {len(self)}")
        buffer = bytearray((end - begin) * self.row_bytes)
        view, done, fd = memoryview(buffer), 0, self._handle()
        while done < len(buffer):
            got = os.preadv(fd, [view[done:]], self.offset + begin * self.row_bytes + done)
            if got == 0:
                raise OSError(f"{self.path}: ends before row {end} (a truncated file?)")
            done += got
        return np.frombuffer(buffer, dtype=self.dtype).reshape(end - begin, *self.shape[1:])

    def row(self, index: int) -> np.ndarray:
        """Row ``index`` as an array of the row's shape (0-d for a 1-D file)."""
        return self.read(index, index + 1).reshape(self.shape[1:])

    def take(self, rows: Iterable[int]) -> np.ndarray:
        """The given rows, in their order (each read on its own)."""
        rows = [int(r) for r in rows]
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        for k, row in enumerate(rows):
            out[k] = self.row(row)
        return out

    def fingerprint(self) -> str:
        """The file's path, size and modification time: a rewritten file is another stream."""
        stat = self.path.stat()
        return f"{self.path}:{stat.st_size}:{stat.st_mtime_ns}"


class Stream(Dataset[tuple[Tensor, Tensor]]):
    """A streamed training split: ``(x, y)`` items by index, a ``fingerprint``; batches read by
    ``__getitems__`` carry their indices, so :func:`sweeper.data.collate_items` names a malformed item."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __getitems__(self, indices: Sequence[int]) -> Items:
        return Items([self[int(i)] for i in indices], indices)

    def fingerprint(self) -> str:
        """What tells this stream from another one (part of a base network's key)."""
        raise NotImplementedError


def _tensor(array: np.ndarray, divide_by: float | None) -> Tensor:
    """Integer data without ``divide_by`` as int64 ids; anything else float32 (divided by ``divide_by``)."""
    t = torch.from_numpy(array)
    if divide_by is None and not (t.is_floating_point() or t.dtype == torch.bool):
        return t.long()
    t = t.float()
    return t / divide_by if divide_by is not None else t


class NpyStream(Stream):
    """Items ``(x[row], y[row])`` of two ``.npy`` files with as many rows, read lazily.

    Args:
        x: the inputs' file, ``(n, *input_shape)``.
        y: the labels' file, ``(n,)`` integer class ids (or ``(n, *target_shape)``).
        rows: the rows this stream serves, in this order (a split's subset, shuffled); None: all, in order.
        divide_by: inputs become float32 divided by it (uint8 pixels: 255); None: integer inputs stay int64
            ids, others become float32.
    """

    def __init__(
        self,
        x: str | os.PathLike[str],
        y: str | os.PathLike[str],
        *,
        rows: Sequence[int] | np.ndarray | None = None,
        divide_by: float | None = None,
    ) -> None:
        self.x, self.y = NpyArray(x), NpyArray(y)
        if len(self.x) != len(self.y):
            raise ValueError(f"{self.x.path} holds {len(self.x)} rows, {self.y.path} {len(self.y)}; need as many")
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows is not None and len(self.rows) and not 0 <= self.rows.min() <= self.rows.max() < len(self.x):
            raise ValueError(f"NpyStream: rows outside [0, {len(self.x)}) of {self.x.path}")
        self.divide_by = divide_by

    def __len__(self) -> int:
        return len(self.x) if self.rows is None else len(self.rows)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"NpyStream: item {index} outside its {len(self)}")
        row = int(index % len(self) if self.rows is None else self.rows[index])
        return self.inputs(self.x.row(row)), _tensor(self.y.row(row), None)

    def inputs(self, rows: np.ndarray) -> Tensor:
        """Raw rows of ``x`` as the model's inputs (what an item's ``x`` is): for in-memory splits of the same file."""
        return _tensor(rows, self.divide_by)

    def fingerprint(self) -> str:
        rows = "all" if self.rows is None else hashlib.sha256(self.rows.tobytes()).hexdigest()
        return f"{self.x.fingerprint()}|{self.y.fingerprint()}|rows={rows}|divide_by={self.divide_by}"


class TokenWindows(Stream):
    """Windows of ``length`` tokens over a 1-D ``.npy`` of token ids, each with the next token of every position.

    Item ``i`` is ``x = tokens[i*length : (i+1)*length]``, ``y = tokens[i*length + 1 : (i+1)*length + 1]``
    (int64, shape ``(length,)``): a language model's training windows, as :func:`sweeper.tasks.lm_text` cuts them.
    """

    def __init__(self, tokens: str | os.PathLike[str], length: int) -> None:
        self.tokens = NpyArray(tokens)
        if len(self.tokens.shape) != 1 or not np.issubdtype(self.tokens.dtype, np.integer):
            raise ValueError(
                f"{self.tokens.path}: {self.tokens.dtype} {self.tokens.shape}; need a 1-D array of token ids"
            )
        if length < 1 or len(self.tokens) <= length:
            raise ValueError(f"TokenWindows: length={length} needs more than {len(self.tokens)} tokens")
        self.length = length

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"TokenWindows: window {index} outside its {len(self)}")
        begin = (index % len(self)) * self.length
        window = torch.from_numpy(self.tokens.read(begin, begin + self.length + 1)).long()
        return window[:-1], window[1:]

    def fingerprint(self) -> str:
        return f"{self.tokens.fingerprint()}|length={self.length}"


class FileItems(Stream):
    """One file per item: ``x`` loaded from ``files[i]`` by ``load`` (``np.load`` by default), ``y`` ``labels[i]``.

    :meth:`from_folders` reads an ImageFolder-style tree, ``root/<class>/<item><suffix>``. ``load`` must be
    a module-level function (the workers receive it pickled); ``divide_by`` as in :class:`NpyStream`.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        labels: Sequence[int] | np.ndarray,
        *,
        load: Callable[[Path], np.ndarray] = np.load,
        divide_by: float | None = None,
    ) -> None:
        if len(files) != len(labels) or not files:
            raise ValueError(f"FileItems: {len(files)} files and {len(labels)} labels; need as many, > 0")
        self.files = [Path(f).expanduser().resolve() for f in files]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.load, self.divide_by = load, divide_by

    @classmethod
    def from_folders(cls, root: str | os.PathLike[str], *, suffix: str = ".npy", **kwargs: Any) -> FileItems:
        """Every ``root/<class>/*<suffix>``, classes numbered in their names' sorted order, files sorted."""
        folders = sorted(d for d in Path(root).expanduser().iterdir() if d.is_dir())
        pairs = [(f, label) for label, d in enumerate(folders) for f in sorted(d.glob(f"*{suffix}"))]
        if not pairs:
            raise FileNotFoundError(f"{root}: no <class>/*{suffix} files there")
        return cls([f for f, _ in pairs], [label for _, label in pairs], **kwargs)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return _tensor(np.asarray(self.load(self.files[index])), self.divide_by), torch.tensor(self.labels[index])

    def fingerprint(self) -> str:
        """Every file's path, size and modification time, and the labels (one ``stat`` per file)."""
        digest = hashlib.sha256(self.labels.tobytes() + f"{self.load.__module__}.{self.load.__qualname__}".encode())
        for path in self.files:
            stat = path.stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return f"{digest.hexdigest()}|divide_by={self.divide_by}"


def write_npy(
    path: str | os.PathLike[str], shape: Sequence[int], dtype: Any, chunks: Iterable[np.ndarray | bytes]
) -> None:
    """Write a ``.npy`` file of ``shape`` and ``dtype`` from ``chunks`` of its C-ordered data, one at a time.

    Raises:
        ValueError: the chunks hold another number of bytes than ``shape`` needs (the file is left partial).
    """
    path, dtype = Path(path), np.dtype(dtype)
    expected = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": tuple(int(d) for d in shape),
    }
    written = 0
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for chunk in chunks:
            data = np.ascontiguousarray(chunk, dtype=dtype).tobytes() if isinstance(chunk, np.ndarray) else chunk
            f.write(data)
            written += len(data)
    if written != expected:
        raise ValueError(f"{path}: wrote {written} bytes, a {tuple(shape)} {dtype} array needs {expected}")
