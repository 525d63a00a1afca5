"""Built-in networks, sized for the task at build time.

A model plug-in is any callable named by `model._target_`. It receives the keyword
arguments of its config plus ``input_shape`` (per-sample shape, e.g. ``(1, 8, 8)``) and
``num_classes``, and returns an ``nn.Module`` mapping a batch of inputs to class logits.
``mlp`` and ``cnn`` are ``nn.Sequential`` stacks; ``resnet`` (residual blocks with BatchNorm)
and ``transformer`` (a ``nn.TransformerEncoder`` over tokens or feature vectors) are the
shapes of networks practitioners ship, and every compression method handles all four.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "NeuralCF",
    "ResNet",
    "SequenceCNN",
    "TransformerClassifier",
    "make_cnn",
    "make_mlp",
    "make_ncf",
    "make_resnet",
    "make_sequence_cnn",
    "make_transformer",
]


def _check_widths(key: str, widths: Sequence[int]) -> list[int]:
    widths = [int(w) for w in widths]
    if any(w < 1 for w in widths):
        raise ValueError(f"model.{key}={widths}: every width must be >= 1")
    return widths


def make_mlp(
    *, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (128, 64), dropout: float = 0.0
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
    layers += [nn.Flatten(), nn.Linear(in_ch * math.prod(spatial), hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


class _BasicBlock(nn.Module):
    """ResNet's basic block: conv-bn-relu-conv-bn plus the (projected) input, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet-style CNN (He et al., 2016): a 3x3 stem, stages of basic blocks, global pooling.

    Each stage after the first halves the spatial size; see :func:`make_resnet`.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: Sequence[int], blocks: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU()
        )
        stages, width = [], channels[0]
        for i, out_ch in enumerate(channels):
            stages += [
                _BasicBlock(width if b == 0 else out_ch, out_ch, 2 if i and b == 0 else 1) for b in range(blocks)
            ]
            width = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def make_resnet(
    *, input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (16, 32, 64), blocks: int = 1
) -> ResNet:
    """A ResNet-style CNN for ``(C, H, W)`` images: one stage of ``blocks`` basic blocks per width.

    Example:
        >>> make_resnet(input_shape=(1, 8, 8), num_classes=10)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    channels = _check_widths("channels", channels)
    if len(input_shape) != 3:
        raise ValueError(f"model=resnet needs inputs shaped (C, H, W); got {tuple(input_shape)}")
    if not (isinstance(blocks, int) and blocks >= 1):
        raise ValueError(f"model.blocks={blocks}: must be an integer >= 1")
    return ResNet(int(input_shape[0]), num_classes, channels, blocks)


class TransformerClassifier(nn.Module):
    """Tokens (ids through an embedding, or feature vectors through a linear map) plus learned
    positions, a ``nn.TransformerEncoder`` (pre-norm, GELU), mean pooling and a linear head."""

    def __init__(
        self,
        *,
        length: int,
        features: int | None,
        vocab: int | None,
        num_classes: int,
        d_model: int,
        heads: int,
        layers: int,
        ff: int,
        dropout: float,
        images: bool = False,
    ) -> None:
        super().__init__()
        self.images = images  # (B, C, H, W) inputs: C*H rows of W pixels (a constant, so FX can trace forward)
        self.embed: nn.Module = nn.Embedding(vocab, d_model) if vocab else nn.Linear(int(features or 1), d_model)
        self.position = nn.Parameter(torch.zeros(1, length, d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=ff, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.images:
            x = x.flatten(1, 2)
        hidden = self.encoder(self.embed(x) + self.position)
        return self.head(self.norm(hidden).mean(dim=1))


def make_transformer(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    vocab: int | None = None,
    d_model: int = 64,
    heads: int = 4,
    layers: int = 2,
    ff: int | None = None,
    dropout: float = 0.1,
) -> TransformerClassifier:
    """A Transformer-encoder classifier.

    ``input_shape`` ``(L,)`` with ``vocab`` set reads L integer token ids; ``(L, F)`` reads L
    feature vectors; an image ``(C, H, W)`` reads its C*H rows of W pixels as tokens.
    ``ff`` defaults to ``4 * d_model``.

    Example:
        >>> make_transformer(input_shape=(16,), num_classes=3, vocab=20)(torch.zeros(2, 16, dtype=torch.long)).shape
        torch.Size([2, 3])
    """
    _check_widths("d_model", [d_model])
    if d_model % heads:
        raise ValueError(f"model.heads={heads}: must divide model.d_model={d_model}")
    if not 0 <= dropout < 1:
        raise ValueError(f"model.dropout={dropout}: must be in [0, 1)")
    shape = [int(s) for s in input_shape]
    if vocab is not None and len(shape) != 1:
        raise ValueError(f"model.vocab={vocab}: token ids need inputs shaped (L,); got {tuple(input_shape)}")
    if vocab is None and len(shape) not in (2, 3):
        raise ValueError(
            f"model=transformer needs (L,) token ids with model.vocab set, or (L, F) / (C, H, W) inputs; got {tuple(input_shape)}"
        )
    return TransformerClassifier(
        length=shape[0] if vocab else math.prod(shape[:-1]),
        features=None if vocab else shape[-1],
        vocab=vocab,
        num_classes=num_classes,
        d_model=d_model,
        heads=heads,
        layers=layers,
        ff=ff or 4 * d_model,
        dropout=dropout,
        images=len(shape) == 3,
    )


class NeuralCF(nn.Module):
    """Neural collaborative filtering (NeuMF, He et al. 2017) over ``(user, item)`` id pairs: a
    generalized matrix factorisation path and an MLP path on separate embeddings, fused by a linear head."""

    def __init__(self, users: int, items: int, dim: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.user_mf, self.item_mf = nn.Embedding(users, dim), nn.Embedding(items, dim)
        self.user_mlp, self.item_mlp = nn.Embedding(users, dim), nn.Embedding(items, dim)
        for table in (self.user_mf, self.item_mf, self.user_mlp, self.item_mlp):
            nn.init.normal_(table.weight, std=0.05)
        layers: list[nn.Module] = []
        width = 2 * dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(dim + width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        user, item = x[:, 0], x[:, 1]
        mf = self.user_mf(user) * self.item_mf(item)
        deep = self.mlp(torch.cat([self.user_mlp(user), self.item_mlp(item)], dim=1))
        return self.head(torch.cat([mf, deep], dim=1))


def make_ncf(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    users: int,
    items: int,
    dim: int = 32,
    hidden: Sequence[int] = (64, 32),
) -> NeuralCF:
    """NeuMF over inputs shaped ``(2,)``: a user id in ``[0, users)`` and an item id in ``[0, items)``.

    Example:
        >>> make_ncf(input_shape=(2,), num_classes=2, users=5, items=7)(torch.tensor([[0, 6], [4, 1]])).shape
        torch.Size([2, 2])
    """
    if tuple(input_shape) != (2,):
        raise ValueError(f"model=ncf needs (user, item) id pairs, inputs shaped (2,); got {tuple(input_shape)}")
    _check_widths("users/items/dim", [users, items, dim])
    return NeuralCF(int(users), int(items), int(dim), _check_widths("hidden", hidden), num_classes)


class SequenceCNN(nn.Module):
    """Embedded residues or tokens, 1-D convolutions (ReLU, 'same' padding), global max pooling, a linear head."""

    def __init__(self, vocab: int, dim: int, channels: Sequence[int], kernel_size: int, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        layers: list[nn.Module] = []
        width = dim
        for c in channels:
            layers += [nn.Conv1d(width, c, kernel_size, padding=kernel_size // 2), nn.ReLU()]
            width = c
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.convs(self.embed(x).transpose(1, 2))
        return self.head(hidden.amax(dim=2))


def make_sequence_cnn(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    vocab: int,
    dim: int = 32,
    channels: Sequence[int] = (64, 64),
    kernel_size: int = 5,
) -> SequenceCNN:
    """A 1-D CNN over ``(L,)`` integer ids in ``[0, vocab)`` (0 pads), e.g. amino acids or DNA bases.

    Example:
        >>> make_sequence_cnn(input_shape=(12,), num_classes=2, vocab=22)(torch.zeros(3, 12, dtype=torch.long)).shape
        torch.Size([3, 2])
    """
    if len(input_shape) != 1:
        raise ValueError(f"model=sequence_cnn needs id sequences shaped (L,); got {tuple(input_shape)}")
    if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
        raise ValueError(f"model.kernel_size={kernel_size}: must be an odd integer >= 1")
    _check_widths("vocab/dim", [vocab, dim])
    return SequenceCNN(int(vocab), int(dim), _check_widths("channels", channels), kernel_size, num_classes)
