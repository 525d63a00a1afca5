"""Streamed data: peak memory of one training epoch on a 200 MB and a 2 GB dataset.

    python scripts/bench_stream.py [--sizes-mb 200 2000] [--features 1024] [--workers 2] [--dir /tmp]

Writes float32 rows of ``--features`` features and their labels as ``.npy`` files in a temporary
directory (removed afterwards), then trains one epoch of a small MLP on each with the project's
training loop (:func:`sweeper.training.train`) in a fresh process per run:

* ``streamed``: :class:`sweeper.streams.NpyStream` read by ``--workers`` DataLoader workers;
* ``memory-mapped``: the same rows through ``np.load(mmap_mode="r")`` (the first size only): why the
  streams read with ``os.pread``;
* ``in memory``: the whole array loaded as tensors, the default path of small tasks (the first size only).

It prints peak RSS of the training process (``RUSAGE_SELF``) and of its largest DataLoader worker
(``RUSAGE_CHILDREN``, the workers having exited), the epoch's seconds, then the streamed growth from the
first size to the last (goal: < 100 MB each) and the streamed / in-memory peak ratio at the first size.
Timings are printed, not asserted; run it on an idle machine with free disk for the largest file.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

CLASSES = 10
BATCH = 256
CHUNK_ROWS = 16_384


def write_dataset(directory: Path, megabytes: int, features: int, seed: int = 0) -> int:
    """``x.npy`` (float32 rows) and ``y.npy`` (labels of a linear rule) of about ``megabytes``; returns the rows."""
    from sweeper.streams import write_npy

    rows = megabytes * 2**20 // (4 * features)
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((features, CLASSES)).astype(np.float32)
    labels: list[np.ndarray] = []

    def chunks() -> Iterator[np.ndarray]:  # one chunk in memory at a time
        for begin in range(0, rows, CHUNK_ROWS):
            x = rng.standard_normal((min(CHUNK_ROWS, rows - begin), features), dtype=np.float32)
            labels.append((x @ weights).argmax(axis=1))
            yield x

    directory.mkdir(parents=True)
    write_npy(directory / "x.npy", (rows, features), np.float32, chunks())
    write_npy(directory / "y.npy", (rows,), np.int64, labels)
    return rows


class _Mapped(Dataset[tuple[Tensor, Tensor]]):
    """Rows of ``x.npy`` / ``y.npy`` through ``np.memmap`` (touched pages count in the reader's RSS)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.arrays: tuple[np.ndarray, np.ndarray] | None = None  # mapped in each process on its first read

    def __len__(self) -> int:
        return int(np.load(self.directory / "y.npy", mmap_mode="r").shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if self.arrays is None:
            self.arrays = (
                np.load(self.directory / "x.npy", mmap_mode="r"),
                np.load(self.directory / "y.npy", mmap_mode="r"),
            )
        x, y = self.arrays
        return torch.from_numpy(np.array(x[index])), torch.tensor(int(y[index]))


def train_once(directory: Path, mode: str, workers: int) -> dict[str, float]:
    """One epoch of a 2-layer MLP on the dataset in ``directory``; run in a process of its own."""
    from torch import nn

    from sweeper.data import Task
    from sweeper.streams import NpyStream
    from sweeper.training import train
    from sweeper.training.strategy import Strategy

    torch.manual_seed(0)
    torch.set_num_threads(1)
    y_head = np.load(directory / "y.npy", mmap_mode="r")
    x_head = np.load(directory / "x.npy", mmap_mode="r")
    x_val, y_val = np.array(x_head[:1024]), np.array(y_head[:1024])  # a bounded in-memory validation split
    del x_head, y_head
    if mode == "in memory":
        x, y = np.load(directory / "x.npy"), np.load(directory / "y.npy")
        val = (torch.from_numpy(x_val), torch.from_numpy(y_val))
        task = Task("bench", torch.from_numpy(x), torch.from_numpy(y), *val, *val, num_classes=CLASSES)
    else:
        stream: Dataset[tuple[Tensor, Tensor]]
        stream = NpyStream(directory / "x.npy", directory / "y.npy") if mode == "streamed" else _Mapped(directory)
        task = Task.streamed(stream, x_val, y_val, x_val, y_val, name="bench", workers=workers, num_classes=CLASSES)
    features = task.input_shape[0]
    model = nn.Sequential(nn.Linear(features, 256), nn.ReLU(), nn.Linear(256, CLASSES))
    start = time.perf_counter()
    result = train(model, task, lambda p: torch.optim.Adam(p, lr=1e-3), Strategy(epochs=1, batch_size=BATCH), seed=0)
    seconds = time.perf_counter() - start
    expected = math.ceil(task.train_size / BATCH)
    if result.steps != expected:  # a loop that trained on the in-memory sample only would look flat
        raise SystemExit(f"trained {result.steps} steps, the whole split needs {expected}")
    return {
        "rows": task.train_size,
        "seconds": seconds,
        "val_accuracy": result.best_val_score,
        "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def measure(directory: Path, mode: str, workers: int) -> dict[str, float]:
    """:func:`train_once` in a fresh process: its peak RSS is its own."""
    command = [sys.executable, __file__, "--train", str(directory), "--mode", mode, "--workers", str(workers)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--features", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where the temporary dataset goes (default: the system's)")
    parser.add_argument("--train", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="streamed", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train is not None:
        print(json.dumps(train_once(args.train, args.mode, args.workers)))
        return

    need = 2**20 * max(args.sizes_mb) * 1.1
    root = Path(tempfile.mkdtemp(prefix="bench-stream-", dir=args.dir))
    if shutil.disk_usage(root).free < need:
        shutil.rmtree(root)
        raise SystemExit(f"{root}: less than {need / 2**30:.1f} GB free for the largest dataset")
    rows: list[tuple[str, str, dict[str, float]]] = []
    try:
        for k, size in enumerate(args.sizes_mb):
            directory = root / f"{size}mb"
            write_dataset(directory, size, args.features)
            modes = ["in memory", "memory-mapped", "streamed"] if k == 0 else ["streamed"]
            for mode in modes:
                rows.append((f"{size} MB", mode, measure(directory, mode, args.workers)))
                print(f"  measured {size} MB {mode}", file=sys.stderr, flush=True)
            shutil.rmtree(directory)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print("| dataset | path | rows | training process peak RSS | largest worker peak RSS | epoch s | val accuracy |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for size, mode, m in rows:
        workers = f"{m['worker_mb']:.0f} MB" if mode != "in memory" else "-"
        print(
            f"| {size} | {mode} | {m['rows']:,} | {m['main_mb']:.0f} MB | {workers} | {m['seconds']:.1f} | {m['val_accuracy']:.3f} |"
        )
    streamed = [m for _, mode, m in rows if mode == "streamed"]
    memory = next(m for _, mode, m in rows if mode == "in memory")
    growth = [streamed[-1][key] - streamed[0][key] for key in ("main_mb", "worker_mb")]
    first, last = args.sizes_mb[0], args.sizes_mb[-1]
    print(
        f"\nstreamed growth {first} MB -> {last} MB: training process {growth[0]:+.0f} MB, worker {growth[1]:+.0f} MB"
    )
    print(
        f"streamed / in-memory peak of the training process at {first} MB: {streamed[0]['main_mb'] / memory['main_mb']:.2f}"
    )
    print(f"stream-growth {max(growth):.1f} goal <100 {'PASS' if max(growth) < 100 else 'MISS'}")


if __name__ == "__main__":
    main()
