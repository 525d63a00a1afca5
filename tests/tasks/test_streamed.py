"""The built-in image-folder and language-model tasks stream their training split from files converted once."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch
from test_conf import write_idx

from sweeper.data import read_items
from sweeper.streams import NpyStream, TokenWindows
from sweeper.tasks import image_folder, lm_text


def _idx_dir(root, n: int):
    root.mkdir(exist_ok=True)
    return write_idx(root, n=n)


def _idx_images(path) -> np.ndarray:
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28).copy()


def test_image_folder_streams_the_training_rows_of_its_idx_files(tmp_path):
    root = _idx_dir(tmp_path / "idx", 90)
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress((root / "t10k-images-idx3-ubyte").read_bytes()))
    (root / "t10k-images-idx3-ubyte").unlink()  # a gzipped file reads as the plain one
    task = image_folder(seed=0, path=str(root), stream_dir=str(tmp_path / "cache"))
    stream = task.train_stream
    assert isinstance(stream, NpyStream) and task.train_size == len(stream) == 81 and len(task.x_val) == 9
    images = _idx_images(root / "train-images-idx3-ubyte")
    rows = stream.rows
    assert rows is not None and sorted(rows.tolist() + [i for i in range(90) if i not in rows]) == list(range(90))
    x, y = read_items(stream, range(len(stream)))
    assert torch.equal(x, torch.from_numpy(images[rows]).float() / 255) and torch.equal(
        x[: len(task.x_train)], task.x_train
    )
    assert torch.equal(y, torch.from_numpy(rows % 3)) and torch.equal(task.y_train, y[: len(task.y_train)])
    assert torch.equal(task.x_test, torch.from_numpy(_idx_images(root / "t10k-images-idx3-ubyte.gz")).float() / 255)
    whole = image_folder(seed=0, path=str(root), stream=False, stream_dir=str(tmp_path / "cache"))
    assert whole.train_stream is None and torch.equal(whole.x_train, x) and torch.equal(whole.x_val, task.x_val)


def test_image_folder_converts_once_and_again_when_a_file_changes(tmp_path):
    root, cache = _idx_dir(tmp_path / "idx", 60), tmp_path / "cache"
    first = image_folder(seed=0, path=str(root), stream_dir=str(cache)).train_stream
    again = image_folder(seed=1, path=str(root), stream_dir=str(cache)).train_stream
    assert isinstance(first, NpyStream) and isinstance(again, NpyStream)
    assert again.x.path == first.x.path and again.x.fingerprint() == first.x.fingerprint()  # not rewritten
    write_idx(root, n=63)
    changed = image_folder(seed=0, path=str(root), stream_dir=str(cache)).train_stream
    assert isinstance(changed, NpyStream) and changed.x.path != first.x.path and len(changed.x) == 63


def _write_cifar(root, per_batch: int = 12) -> np.ndarray:
    """Tiny CIFAR-10 python batches: five training ones and a test one; returns every image in file order."""
    root.mkdir()
    rng = np.random.default_rng(0)
    everything = []
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        everything.append(data)
        entry = {b"data": data, b"labels": [i % 4 for i in range(per_batch)]}
        (root / name).write_bytes(pickle.dumps(entry))
    return np.concatenate(everything).reshape(-1, 3, 32, 32)


def test_image_folder_streams_cifar_batches(tmp_path):
    images = _write_cifar(tmp_path / "cifar")
    task = image_folder(seed=0, path=str(tmp_path / "cifar"), format="cifar", stream_dir=str(tmp_path / "c"))
    stream = task.train_stream
    assert isinstance(stream, NpyStream) and task.input_shape == (3, 32, 32) and task.num_classes == 4
    assert stream.rows is not None and task.train_size + len(task.x_val) == 60 and len(task.x_test) == 12
    row = int(stream.rows[5])
    assert torch.equal(stream[5][0], torch.from_numpy(images[row]).float() / 255) and int(stream[5][1]) == row % 12 % 4
    assert torch.equal(task.x_test, torch.from_numpy(images[60:]).float() / 255)


def test_image_folder_names_a_missing_batch_and_a_bad_format(tmp_path):
    _write_cifar(tmp_path / "cifar")
    (tmp_path / "cifar" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="no data_batch_3 there"):
        image_folder(seed=0, path=str(tmp_path / "cifar"), format="cifar", stream_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"data\.format='png': allowed: idx, cifar"):
        image_folder(seed=0, path=str(tmp_path / "cifar"), format="png", stream_dir=str(tmp_path / "c"))


@pytest.fixture(scope="module")
def lm_tasks(tmp_path_factory):
    """lm_text streamed and in memory (one BPE training each)."""
    cache = tmp_path_factory.mktemp("streams")
    kwargs = {"seed": 0, "length": 32, "vocab_size": 500, "eval_windows": 8, "stream_dir": str(cache)}
    return lm_text(**kwargs), lm_text(**kwargs, stream=False)


def test_lm_text_streams_its_training_windows_as_the_in_memory_task_holds_them(lm_tasks):
    streamed, in_memory = lm_tasks
    windows = streamed.train_stream
    assert isinstance(windows, TokenWindows) and windows.tokens.dtype == np.uint16  # the smallest that holds the ids
    assert streamed.train_size == len(in_memory.x_train) > len(streamed.x_train) == 1024
    x, y = read_items(windows, range(len(windows)))
    assert torch.equal(x, in_memory.x_train) and torch.equal(y, in_memory.y_train)
    assert torch.equal(streamed.x_train, x[:1024]) and torch.equal(streamed.x_val, in_memory.x_val)
    assert streamed.num_classes == in_memory.num_classes and streamed.loss is in_memory.loss
