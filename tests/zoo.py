"""Networks and a token task of a user's own, of the shapes practitioners ship, for the compression tests.

Each model follows the plug-in contract (keyword arguments plus ``input_shape`` and
``num_classes``) and is plugged in by ``model._target_=zoo.<Name>``; none is an
``nn.Sequential``. The configs under ``tests/zoo_conf`` select them like built-in options; the
token models read ``data=digit_tokens`` (``data.positional=true`` for the bag of tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from sweeper.data import Task
from sweeper.tasks.builtin import DIGIT_LEVELS, digit_tokens  # noqa: F401  (zoo.digit_tokens: the token task)


class _PreActivation(nn.Module):
    """A pre-activation residual block (He et al., 2016b): bn-relu-conv twice, plus the input
    (through a strided 1x1 conv where the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.BatchNorm2d(in_ch), nn.BatchNorm2d(out_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        self.project = (
            nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False) if stride != 1 or in_ch != out_ch else None
        )

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.project is None else self.project(x)
        return skip + self.conv2(self.act(self.norm2(self.conv1(self.act(self.norm1(x))))))


class TinyResNet(nn.Module):
    """A residual CNN with BatchNorm: a stem, an identity and a strided pre-activation block, global pooling."""

    def __init__(self, *, input_shape: Sequence[int], num_classes: int, channels: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.block1 = _PreActivation(channels, channels, 1)
        self.block2 = _PreActivation(channels, 2 * channels, 2)
        self.final = nn.Sequential(nn.BatchNorm2d(2 * channels), nn.ReLU())  # pre-activation nets end normalised
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.final(self.block2(self.block1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class TinyTransformer(nn.Module):
    """Image rows as tokens: a linear embedding, learned positions, a TransformerEncoder, mean pooling."""

    def __init__(
        self, *, input_shape: Sequence[int], num_classes: int, d_model: int = 32, heads: int = 4, layers: int = 2
    ) -> None:
        super().__init__()
        tokens, features = int(np.prod(input_shape[:-1])), int(input_shape[-1])
        self.embed = nn.Linear(features, d_model)
        self.position = nn.Parameter(torch.zeros(1, tokens, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = x.reshape(x.shape[0], -1, x.shape[-1])  # (batch, rows, row pixels)
        hidden = self.encoder(self.embed(tokens) + self.position)
        return self.head(self.norm(hidden).mean(dim=1))


class BagOfTokens(nn.Module):
    """Token ids in: an EmbeddingBag (mean) and a ReLU MLP on top."""

    def __init__(
        self, *, input_shape: Sequence[int], num_classes: int, vocab: int = 64 * DIGIT_LEVELS, dim: int = 32
    ) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab, dim, mode="mean")
        self.mlp = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.mlp(self.bag(tokens))


class SequenceCNN(nn.Module):
    """Token ids in: an Embedding, two 1-D convolutions (ReLU, GELU), global max pooling."""

    def __init__(
        self, *, input_shape: Sequence[int], num_classes: int, vocab: int = DIGIT_LEVELS, dim: int = 16
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.conv1 = nn.Conv1d(dim, 32, 5, padding=2)
        self.conv2 = nn.Conv1d(32, 32, 3, padding=1)
        self.act1, self.act2 = nn.ReLU(), nn.GELU()
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(32, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens).transpose(1, 2)  # (batch, dim, length)
        x = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.head(self.dropout(x.amax(dim=2)))


class RowGRU(nn.Module):
    """Image rows as a sequence through a GRU (``cell="lstm"``: an LSTM), the last hidden state classified
    (a layer torch-pruning cannot resize)."""

    def __init__(self, *, input_shape: Sequence[int], num_classes: int, hidden: int = 32, cell: str = "gru") -> None:
        super().__init__()
        self.cell = cell
        self.gru = {"gru": nn.GRU, "lstm": nn.LSTM}[cell](int(input_shape[-1]), hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        _, state = self.gru(x.reshape(x.shape[0], -1, x.shape[-1]))
        hidden = state[0] if self.cell == "lstm" else state  # an LSTM's state is (h, c)
        return self.head(hidden[-1])


def train_outside(path: Path, *, epochs: int = 3) -> float:
    """What a user does without the tool: train the zoo's ResNet on the digits with a plain loop, save its
    state dict, and score it on the test split; returns that test accuracy."""
    from sweeper.tasks import load_digits

    task = load_digits(seed=0)
    torch.manual_seed(0)
    model = TinyResNet(input_shape=list(task.input_shape), num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        for start in range(0, len(task.x_train), 64):
            x, y = task.x_train[start : start + 64], task.y_train[start : start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(task.x_test).argmax(1) == task.y_test).float().mean())
    torch.save(model.state_dict(), path)
    return accuracy


class _SqueezeExcite(nn.Module):
    """A pooled gate multiplied back onto the feature map (MobileNetV3's squeeze-and-excitation)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce, self.expand = nn.Conv2d(channels, reduced, 1), nn.Conv2d(reduced, channels, 1)
        self.act, self.gate = nn.SiLU(), nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class _InvertedResidual(nn.Module):
    """MobileNetV2/V3's block: 1x1 expansion, 3x3 depthwise, squeeze-excitation, 1x1 projection, residual add."""

    def __init__(self, channels: int, expansion: int) -> None:
        super().__init__()
        wide = channels * expansion
        self.expand = nn.Sequential(nn.Conv2d(channels, wide, 1, bias=False), nn.BatchNorm2d(wide), nn.SiLU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(wide, wide, 3, padding=1, groups=wide, bias=False), nn.BatchNorm2d(wide), nn.Hardswish()
        )
        self.se = _SqueezeExcite(wide, max(8, wide // 4))
        self.project = nn.Sequential(nn.Conv2d(wide, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.project(self.se(self.depthwise(self.expand(x))))


class TinyMobileNet(nn.Module):
    """A MobileNetV3-style network: a Hardswish stem, two inverted residual blocks, pooling, a Linear head."""

    def __init__(self, *, input_shape: Sequence[int], num_classes: int, channels: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.Hardswish()
        )
        self.blocks = nn.Sequential(_InvertedResidual(channels, 4), _InvertedResidual(channels, 4))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def synthetic_failing_on_rank(*, seed: int, rank: int, **synthetic: object) -> Task:
    """The synthetic task, except in data-parallel worker ``rank``, where reading its data fails."""
    import os

    from sweeper.tasks import make_synthetic

    if os.environ.get("RANK") == str(rank):
        raise OSError(f"worker {rank} cannot read its shard")
    return make_synthetic(seed=seed, **synthetic)  # type: ignore[arg-type]
