"""Streamed training splits: rows read lazily from .npy files, batches collated, malformed items named."""

from __future__ import annotations

import doctest
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import sweeper.streams
from sweeper.data import Task, check_stream, collate_items, stream_fingerprint
from sweeper.streams import FileItems, NpyArray, NpyStream, Stream, TokenWindows, write_npy


def test_docstring_examples_run():
    assert doctest.testmod(sweeper.streams).failed == 0


@pytest.fixture
def rows(tmp_path):
    """300 float rows of shape (2, 3) written chunk by chunk, and their labels."""
    x = np.random.default_rng(0).random((300, 2, 3)).astype(np.float32)
    y = np.arange(300) % 4
    write_npy(tmp_path / "x.npy", x.shape, np.float32, [x[:100], x[100:]])
    np.save(tmp_path / "y.npy", y)
    return tmp_path, x, y


def test_a_stream_serves_the_rows_that_were_written(rows):
    root, x, y = rows
    assert np.array_equal(np.load(root / "x.npy"), x)  # write_npy writes a file numpy reads
    stream = NpyStream(root / "x.npy", root / "y.npy")
    assert len(stream) == 300 and stream[0][0].dtype == torch.float32 and stream[0][1].dtype == torch.int64
    for i in (0, 7, 299, -1):
        assert np.array_equal(stream[i][0].numpy(), x[i]) and int(stream[i][1]) == y[i]
    subset = NpyStream(root / "x.npy", root / "y.npy", rows=[5, 2, 250])
    assert len(subset) == 3 and np.array_equal(subset[2][0].numpy(), x[250])
    with pytest.raises(IndexError):
        subset[3]


def test_workers_read_every_item_once_in_the_batches_asked_for(rows):
    root, x, y = rows
    stream = NpyStream(root / "x.npy", root / "y.npy")
    stream[0]  # opened here first: the workers open their own handle
    batches = [list(range(k, 300, 3)) for k in range(3)]
    loader = DataLoader(stream, batch_sampler=batches, num_workers=2, collate_fn=collate_items)
    got = list(loader)
    assert [b[0].shape for b in got] == [(100, 2, 3)] * 3
    for ids, (xb, yb) in zip(batches, got, strict=True):
        assert np.array_equal(xb.numpy(), x[ids]) and np.array_equal(yb.numpy(), y[ids])


def test_a_stream_pickles_without_its_file_handle(rows):
    root, x, _ = rows
    stream = NpyStream(root / "x.npy", root / "y.npy")
    stream[3]
    copy = pickle.loads(pickle.dumps(stream))
    assert copy.x._fd is None and np.array_equal(copy[3][0].numpy(), x[3])


def test_a_memmap_free_reader_rejects_what_it_cannot_read(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((4, 3))))
    with pytest.raises(ValueError, match="C-ordered"):
        NpyArray(tmp_path / "f.npy")
    with pytest.raises(ValueError, match=r"wrote 40 bytes, a \(4, 3\) float64 array needs 96"):
        write_npy(tmp_path / "short.npy", (4, 3), np.float64, [np.ones(5)])


def test_token_windows_are_the_tokens_and_the_next_ones(tmp_path):
    np.save(tmp_path / "t.npy", np.arange(1000, dtype=np.uint16))
    windows = TokenWindows(tmp_path / "t.npy", 32)
    assert len(windows) == 999 // 32
    x, y = windows[2]
    assert x.dtype == torch.int64 and x.tolist() == list(range(64, 96)) and y.tolist() == list(range(65, 97))


class _Ragged(Stream):
    """Items of shape (3, 4, 4) but one: ``bad`` has (3, 4, 3)."""

    def __init__(self, n: int, bad: int) -> None:
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(3, 4, 3 if index == self.bad else 4), torch.tensor(index % 2)

    def fingerprint(self) -> str:
        return f"ragged-{self.n}-{self.bad}"


def _splits() -> tuple[torch.Tensor, ...]:
    return torch.zeros(4, 3, 4, 4), torch.tensor([0, 1, 0, 1]), torch.zeros(4, 3, 4, 4), torch.tensor([0, 1, 0, 1])


def test_an_inconsistent_item_is_one_line_naming_it_before_training():
    with pytest.raises(
        ValueError, match=r"^data: streamed training item 199: x has shape \(3, 4, 3\), the sample's \(3, 4, 4\)$"
    ):
        Task.streamed(_Ragged(200, bad=199), *_splits(), sample=10)  # the last item is always checked


def test_an_inconsistent_item_in_a_worker_is_one_line_naming_it():
    stream = _Ragged(200, bad=123)
    loader = DataLoader(stream, batch_sampler=[list(range(100, 150))], num_workers=1, collate_fn=collate_items)
    with pytest.raises(ValueError) as error:
        next(iter(loader))
    assert str(error.value) == "data: streamed training item 123: x has shape (3, 4, 3), the others (3, 4, 4)"
    with pytest.raises(ValueError, match="item 1 of its batch: x has shape"):
        collate_items([stream[0], stream[123]])  # no indices: the place in the batch


class _Pairs(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A plain dataset (no fingerprint of its own): labels ``label`` at item ``at``, others 0."""

    def __init__(self, label: int, at: int = 0) -> None:
        self.label, self.at = label, at

    def __len__(self) -> int:
        return 50

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(3, 4, 4), torch.tensor(self.label if index == self.at else 0)


def test_a_label_outside_the_classes_or_a_non_pair_is_one_line():
    with pytest.raises(
        ValueError, match=r"^data: streamed training item 49 holds label 7, outside \[0, num_classes=2\)$"
    ):
        Task.streamed(_Pairs(7, at=49), *_splits(), sample=4)
    doubles = TensorDataset(torch.rand(20, 3, 4, 4, dtype=torch.float64), torch.arange(20) % 2)
    with pytest.raises(ValueError, match=r"^data: streamed training items are \(torch.float64, torch.int64\); need x"):
        Task.streamed(doubles, *_splits())
    with pytest.raises(ValueError, match="item 0 is a Tensor; need an"):
        check_stream([torch.zeros(3)], torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))  # type: ignore[arg-type]


def test_the_sample_is_the_streams_first_items_and_the_size_is_the_streams(rows):
    root, x, y = rows
    task = Task.streamed(
        NpyStream(root / "x.npy", root / "y.npy"), x[:8], y[:8], x[8:16], y[8:16], sample=64, workers=0
    )
    assert task.train_size == 300 and len(task.x_train) == 64 and task.input_shape == (2, 3)
    assert np.array_equal(task.x_train.numpy(), x[:64]) and np.array_equal(task.y_train.numpy(), y[:64])
    assert task.num_classes == 4 and task.stream_workers == 0
    whole = task.in_memory()
    assert whole.train_stream is None and whole.train_size == 300 and np.array_equal(whole.x_train.numpy(), x)
    with pytest.raises(ValueError, match=r"^Task.x_val: samples of shape \(6,\), the stream's \(2, 3\)$"):
        Task.streamed(task.train_stream, x[:8].reshape(8, 6), y[:8], x[8:16], y[8:16])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stream_workers=-1"):
        Task.streamed(task.train_stream, x[:8], y[:8], x[8:16], y[8:16], workers=-1)  # type: ignore[arg-type]


def test_fingerprints_tell_streams_apart(rows, tmp_path):
    root, x, _ = rows
    stream = NpyStream(root / "x.npy", root / "y.npy")
    assert stream_fingerprint(stream) == stream_fingerprint(NpyStream(root / "x.npy", root / "y.npy"))
    assert stream_fingerprint(stream) != stream_fingerprint(NpyStream(root / "x.npy", root / "y.npy", rows=[1, 0]))
    np.save(tmp_path / "x2.npy", x[::-1])
    assert stream_fingerprint(stream) != stream_fingerprint(NpyStream(tmp_path / "x2.npy", root / "y.npy"))
    assert stream_fingerprint(_Pairs(1)) == stream_fingerprint(_Pairs(1)) != stream_fingerprint(_Pairs(1, at=49))


def test_files_in_class_folders_are_items_labelled_by_their_folder(tmp_path):
    rng = np.random.default_rng(0)
    written = {}
    for label, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for k in range(3):
            written[(label, k)] = rng.integers(0, 256, (1, 4, 4), dtype=np.uint8)
            np.save(tmp_path / name / f"{k}.npy", written[(label, k)])
    items = FileItems.from_folders(tmp_path, divide_by=255.0)
    assert len(items) == 6 and [int(items[i][1]) for i in range(6)] == [0, 0, 0, 1, 1, 1]
    assert torch.equal(items[4][0], torch.from_numpy(written[(1, 1)]).float() / 255)
    loader = DataLoader(items, batch_sampler=[[5, 0], [1, 2, 3, 4]], num_workers=1, collate_fn=collate_items)
    (x, y), _ = list(loader)
    assert y.tolist() == [1, 0] and torch.equal(x[1], items[0][0])
    before = stream_fingerprint(items)
    np.save(tmp_path / "dog" / "2.npy", np.zeros((1, 4, 4), dtype=np.uint8) + 7)
    assert stream_fingerprint(items) != before
