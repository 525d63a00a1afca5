"""The built-in image-folder and language-model tasks stream their training split from files converted once."""

from __future__ import annotations

import gzip
import math
import pickle

import numpy as np
import pytest
import torch
from conftest import compose_config
from test_conf import write_idx
from torch.utils.data import Dataset

from sweeper.data import Task, read_items
from sweeper.errors import ConfigError
from sweeper.streams import NpyStream, TokenWindows
from sweeper.tasks import image_folder, lm_text
from sweeper.trial.context import JobContext
from sweeper.trial.plan import plan_trial
from sweeper.trial.run import run


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


def test_a_trial_on_a_streamed_task_trains_on_the_whole_stream(tmp_path):
    root = _idx_dir(tmp_path / "idx", 1200)  # 1,080 training images: more than the 1,024 of the sample
    data = ["data=image_folder", f"data.path={root}", f"data.stream_dir={tmp_path / 'cache'}", "data.stream_workers=1"]
    cfg_tail = ["model=mlp", "strategy.epochs=2", "strategy.batch_size=64"]
    result = run(compose_config(*data, *cfg_tail), JobContext.standalone(tmp_path / "run"))
    assert result.metrics["train_samples"] == 1080 and result.trained is not None
    assert result.trained.result.steps == 2 * math.ceil(1080 / 64)  # every streamed item, not the sample's 16 batches
    in_memory = run(compose_config(*data, "data.stream=false", *cfg_tail), JobContext.standalone(tmp_path / "memory"))
    assert in_memory.metrics["train_samples"] == 1080  # the same batches read from memory: the same network
    assert result.metrics["test_score"] == in_memory.metrics["test_score"] > result.metrics["baseline_test_score"]


def ragged_task(*, seed: int, **_: object) -> Task:
    """A data plug-in whose stream's last item is a column short."""

    class Ragged(Dataset[tuple[torch.Tensor, torch.Tensor]]):
        def __len__(self) -> int:
            return 100

        def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.zeros(1, 8, 7 if index == 99 else 8), torch.tensor(index % 2)

    x, y = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(seed)), torch.arange(10) % 2
    return Task.streamed(Ragged(), x, y, x, y, sample=16)


def test_a_streamed_item_of_another_shape_is_one_line_before_training():
    with pytest.raises(ConfigError) as error:
        plan_trial(compose_config("data._target_=test_streamed.ragged_task"))
    assert str(error.value) == "data: streamed training item 99: x has shape (1, 8, 7), the sample's (1, 8, 8)"
