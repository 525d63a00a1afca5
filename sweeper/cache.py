"""A file cache that several processes share: compute each entry once, publish it atomically.

Used for results that many trials need and that cost minutes to make, such as the trained
teacher of distillation (``.sweeper_cache/teachers/<content hash>.pt``). Workers on one
machine, or on several machines sharing the directory over a file system with working
``flock`` (NFSv4, Lustre, most cluster file systems), serialize on a lock file next to the
entry: the first one computes it, the others wait and then read it.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> def make(tmp: pathlib.Path) -> None:
    ...     tmp.write_text("teacher weights")
    >>> path = compute_once(root / "teachers" / "abc.pt", make)
    >>> path.read_text()
    'teacher weights'
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "compute_once", "file_lock"]


@contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) while in the block.

    The lock is released when the block ends or the process dies (the kernel drops it), so a
    killed worker never leaves the others waiting forever.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path next to ``target``, moved onto it with ``os.replace`` if the block succeeds.

    Readers see either no file or the whole file, never a partial one; on an error the
    temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")  # unique per writer
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():  # an entry that is a directory (a tokenizer), left by a failed writer
            shutil.rmtree(tmp)
        tmp.unlink(missing_ok=True)


def compute_once(target: str | os.PathLike[str], make: Callable[[Path], None]) -> Path:
    """Return ``target``, calling ``make(tmp)`` to write it first if no process has.

    ``make`` writes the entry to the path it is given; the result appears at ``target``
    atomically. Concurrent callers with the same ``target`` wait on ``<target>.lock``
    and only the first one calls ``make``. If ``make`` raises, nothing is published and the
    next caller tries again.

    Args:
        target: where the entry lives, e.g. ``.sweeper_cache/teachers/<hash>.pt``.
        make: writes the entry to the given path.

    Returns:
        ``target`` as a :class:`~pathlib.Path`.
    """
    target = Path(target)
    if target.exists():  # the common case needs no lock
        return target
    with file_lock(target.with_name(f"{target.name}.lock")):
        if not target.exists():  # another process may have made it while this one waited
            with atomic_path(target) as tmp:
                make(tmp)
    return target
