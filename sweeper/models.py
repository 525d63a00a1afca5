"""Built-in networks, sized for the task at build time.

A model plug-in is any callable named by `model._target_`. It receives the keyword
arguments of its config plus ``input_shape`` (per-sample shape, e.g. ``(1, 8, 8)``) and
``num_classes``, and returns an ``nn.Module`` mapping a batch of inputs to class logits.
Networks are plain ``nn.Sequential`` stacks so that compression methods can walk them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

__all__ = ["make_mlp", "make_cnn"]


def _check_widths(key: str, widths: Sequence[int]) -> list[int]:
    widths = [int(w) for w in widths]
    if any(w < 1 for w in widths):
        raise ValueError(f"model.{key}={widths}: every width must be >= 1")
    return widths


def make_mlp(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    hidden: Sequence[int] = (128, 64),
    dropout: float = 0.0,
) -> nn.Sequential:
    """A fully connected ReLU network over the flattened input.

    Example:
        >>> make_mlp(input_shape=(1, 8, 8), num_classes=10, hidden=[32])[1]
        Linear(in_features=64, out_features=32, bias=True)
    """
    hidden = _check_widths("hidden", hidden)
    if not 0 <= dropout < 1:
        raise ValueError(f"model.dropout={dropout}: must be in [0, 1)")
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def make_cnn(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    channels: Sequence[int] = (16, 32),
    hidden: int = 64,
    kernel_size: int = 3,
) -> nn.Sequential:
    """Conv -> ReLU -> MaxPool blocks, then a ReLU hidden layer and the classifier.

    ``input_shape`` ``(C, H, W)`` uses 2-D convolutions, ``(C, L)`` 1-D ones, and a flat
    ``(F,)`` feature vector is read as a one-channel sequence of length F. Pooling halves
    the spatial size while it is at least 2.
    """
    channels = _check_widths("channels", channels)
    _check_widths("hidden", [hidden])
    shape = list(input_shape)
    layers: list[nn.Module] = []
    if len(shape) == 1:
        layers.append(nn.Unflatten(1, (1, shape[0])))
        shape = [1, shape[0]]
    if len(shape) not in (2, 3):
        raise ValueError(f"model=cnn needs inputs shaped (C, H, W), (C, L) or (F,); got {tuple(input_shape)}")
    conv, pool = (nn.Conv2d, nn.MaxPool2d) if len(shape) == 3 else (nn.Conv1d, nn.MaxPool1d)
    in_ch, spatial = shape[0], shape[1:]
    for out_ch in channels:
        layers += [conv(in_ch, out_ch, kernel_size, padding=kernel_size // 2), nn.ReLU()]
        if min(spatial) >= 2:
            layers.append(pool(2))
            spatial = [s // 2 for s in spatial]
        in_ch = out_ch
    layers += [
        nn.Flatten(),
        nn.Linear(in_ch * math.prod(spatial), hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    ]
    return nn.Sequential(*layers)
