"""Built-in tasks: real data, stratified seeded splits that never overlap."""

from __future__ import annotations

import doctest
import re

import numpy as np
import pytest
import torch

import sweeper.data
import sweeper.models
from sweeper.data import Task
from sweeper.models import make_cnn, make_mlp
from sweeper.tasks import load_digits, make_synthetic


def test_docstring_examples_run():
    for module in (sweeper.data, sweeper.models):
        assert doctest.testmod(module).failed == 0


def test_digits_is_the_real_dataset_split_without_overlap():
    task = load_digits(seed=0)
    assert task.input_shape == (1, 8, 8) and task.num_classes == 10
    assert len(task.x_train) + len(task.x_val) + len(task.x_test) == 1797
    assert float(task.x_train.min()) == 0.0 and float(task.x_train.max()) == 1.0
    rows = [tuple(x.flatten().tolist()) for x in (task.x_train, task.x_val, task.x_test) for x in x]
    # A handful of digits images are exact duplicates in the dataset itself; splits are disjoint by index.
    assert len(set(rows)) > 1750
    for split in (task.y_train, task.y_val, task.y_test):
        shares = torch.bincount(split, minlength=10).float() / len(split)
        assert torch.all((shares - 0.1).abs() < 0.02)  # stratified: ~10% of each digit in every split


def test_split_depends_on_the_seed_only():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_test, c.x_test)


def test_synthetic_has_the_requested_shape_and_classes():
    task = make_synthetic(seed=3, n_samples=500, n_features=7, n_informative=4, n_classes=3)
    assert task.input_shape == (7,) and task.num_classes == 3
    assert len(task.x_train) + len(task.x_val) + len(task.x_test) == 500


def test_bad_split_fractions_are_refused():
    x, y = np.zeros((50, 2)), np.arange(50) % 2
    with pytest.raises(ValueError, match=re.escape("data.test_fraction=1.5")):
        Task.from_arrays(x, y, seed=0, test_fraction=1.5)
    with pytest.raises(ValueError, match="must be < 1"):
        Task.from_arrays(x, y, seed=0, val_fraction=0.5, test_fraction=0.5)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16), (20,)])
def test_cnn_handles_images_sequences_and_feature_vectors(shape):
    model = make_cnn(input_shape=shape, num_classes=4)
    assert model(torch.zeros(2, *shape)).shape == (2, 4)
    assert make_mlp(input_shape=shape, num_classes=4)(torch.zeros(2, *shape)).shape == (2, 4)


# ---- the data a task plug-in hands over is checked before training ----------------------------------


def _blobs(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)), np.arange(n) % 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda x, y: (x, y.astype(float) + 0.5),
            r"Task.from_arrays: labels must be integer class ids; row 0 holds 0.5",
        ),
        (lambda x, y: (np.where(np.arange(len(x))[:, None] == 7, np.nan, x), y), r"Task.x_\w+: row \d+ holds NaN"),
    ],
)
def test_bad_data_is_one_line_naming_the_split_and_row(change, message):
    x, y = change(*_blobs())
    with pytest.raises(ValueError, match=message):
        Task.from_arrays(x, y, seed=0)


def test_a_label_outside_num_classes_names_its_split_and_row():
    x, y = _blobs()
    with pytest.raises(ValueError, match=r"Task.y_\w+: row \d+ holds label 4, outside \[0, num_classes=3\)"):
        Task.from_arrays(x, np.where(np.arange(len(y)) == 5, 4, y), seed=0, num_classes=3)


def test_from_splits_keeps_the_published_test_split_and_carves_validation_from_train():
    x, y = _blobs(100)
    task = Task.from_splits(x[:70], y[:70], x[70:], y[70:], seed=3, val_fraction=0.2, metrics=["macro_f1", "accuracy"])
    assert torch.equal(task.x_test, torch.from_numpy(x[70:].astype(np.float32)))  # untouched, in order
    assert len(task.x_val) == 15 and len(task.x_train) == 55  # 20 % of each class, rounded
    train_rows = {tuple(r) for r in task.x_train.tolist()} | {tuple(r) for r in task.x_val.tolist()}
    assert train_rows == {tuple(r) for r in x[:70].astype(np.float32).tolist()}
    assert task.score_metric == "macro_f1" and set(task.evaluate(torch.nn.Linear(3, 3), "val")) == {
        "macro_f1",
        "accuracy",
    }
    with pytest.raises(ValueError, match=r"Task.metrics=\['f2'\]: allowed: accuracy, macro_f1"):
        Task.from_splits(x[:70], y[:70], x[70:], y[70:], seed=3, metrics=["f2"])
