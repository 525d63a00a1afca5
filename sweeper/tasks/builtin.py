"""The built-in default tasks: scikit-learn's digits (as images or as tokens) and generated data.

No download: the digits come from the CSV file scikit-learn ships, the synthetic task is generated.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from sweeper.data import Task

__all__ = ["DIGIT_LEVELS", "digit_tokens", "load_digits", "make_synthetic"]

DIGIT_LEVELS = 17  # scikit-learn's digits hold pixel values 0..16


def _digits_table() -> np.ndarray:
    """scikit-learn's digits CSV: 64 pixel values in 0..16, then the label (read without importing sklearn)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("data=digits needs scikit-learn installed (it ships the digits file)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    return np.loadtxt(path, delimiter=",", dtype=np.float32)


def load_digits(*, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.2, image_size: int = 8) -> Task:
    """The 1,797 8x8 handwritten digits that scikit-learn ships, as 1x8x8 images in [0, 1].

    The CSV file bundled with scikit-learn is read directly: importing scikit-learn costs
    seconds of start-up that a trial does not need. ``image_size`` > 8 resizes the images
    (bilinear), for networks whose cost should be that of larger inputs.
    """
    if not (isinstance(image_size, int) and image_size >= 8):
        raise ValueError(f"data.image_size={image_size}: must be an integer >= 8")
    table = _digits_table()
    images = table[:, :-1].reshape(-1, 1, 8, 8) / 16.0
    if image_size != 8:
        resized = torch.nn.functional.interpolate(torch.from_numpy(images), size=image_size, mode="bilinear")
        images = resized.numpy()
    return _digits_task(images, table, "digits", seed, val_fraction, test_fraction)


def _digits_task(
    x: np.ndarray, table: np.ndarray, name: str, seed: int, val_fraction: float, test_fraction: float
) -> Task:
    """The digits' inputs ``x`` with the table's labels (its last column), split as every built-in task is."""
    return Task.from_arrays(
        x, table[:, -1].astype(np.int64), seed=seed, name=name, val_fraction=val_fraction, test_fraction=test_fraction
    )


def digit_tokens(
    *, seed: int, positional: bool = False, val_fraction: float = 0.15, test_fraction: float = 0.2
) -> Task:
    """The same digits as sequences of 64 integer tokens (row by row): each pixel's value 0..16,
    or ``position * 17 + value`` with ``positional`` (a bag-of-tokens model then sees where).

    For token models (embeddings, 1-D convolutions, transformers over ids); vocabulary 17,
    or 64 * 17 = 1,088 with ``positional``.
    """
    table = _digits_table()
    tokens = table[:, :-1].astype(np.int64)
    if positional:
        tokens = tokens + DIGIT_LEVELS * np.arange(tokens.shape[1])
    return _digits_task(tokens, table, "digit_tokens", seed, val_fraction, test_fraction)


def make_synthetic(
    *,
    seed: int,
    n_samples: int = 2000,
    n_features: int = 20,
    n_informative: int = 10,
    n_classes: int = 4,
    noise: float = 0.01,
    class_sep: float = 1.0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
) -> Task:
    """Generated classification data (scikit-learn's ``make_classification``), standardized.

    ``noise`` is the fraction of labels flipped at random.
    """
    from sklearn.datasets import make_classification

    if n_informative > n_features:
        raise ValueError(f"data.n_informative={n_informative}: must be <= data.n_features={n_features}")
    if not 0 <= noise < 1:
        raise ValueError(f"data.noise={noise}: must be in [0, 1)")
    x, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_classes=n_classes,
        flip_y=noise,
        class_sep=class_sep,
        random_state=seed,
    )
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    return Task.from_arrays(x, y, seed=seed, name="synthetic", val_fraction=val_fraction, test_fraction=test_fraction)
