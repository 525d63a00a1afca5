"""Structured pruning: whole output channels / neurons removed, so the network is physically smaller.

Dependency tracking (which input channels of the next layer, which bias entries go with a
removed channel) is torch-pruning's ``DependencyGraph``; importance is the L1 or L2 norm
of each channel's weights. The classifier's outputs are never pruned. The artifact
(``structured``) is a dense state dict of the smaller network: the loader builds the
original architecture from the model spec and resizes each layer to the stored shapes,
so no code is read from the file.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from sweeper.artifact import ModelSpec, register_loader
from sweeper.compression._base import CompressionContext, Compressed
from sweeper.compression._prune import _check_amount, _check_epochs, existing_zeros, mask_hook
from sweeper.compression._storage import decode_state, encode_state

__all__ = ["StructuredPruning"]

_RESIZABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LAYERS = (nn.Linear, *_CONV)


def _prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Linear/Conv layers whose outputs may be pruned: all but the last (the classifier)."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, _LAYERS)]
    return layers[:-1]


def _out_channels(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


class StructuredPruning:
    """``compression=prune_structured``: remove a fraction of every layer's output channels, then fine-tune.

    Args:
        amount: fraction of output channels / neurons removed per layer, in [0, 1).
        norm: importance of a channel, the ``1`` (L1) or ``2`` (L2) norm of its weights.
        finetune_epochs: epochs of fine-tuning of the smaller network.
    """

    def __init__(self, *, amount: float = 0.5, norm: int = 2, finetune_epochs: int = 5) -> None:
        self.amount = _check_amount(amount)
        if norm not in (1, 2):
            raise ValueError(f"compression.norm={norm}: allowed: 1, 2")
        self.norm = norm
        self.finetune_epochs = _check_epochs(finetune_epochs)

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Fail before training when a layer would lose every channel or a module cannot be resized."""
        for name, module in model.named_modules():
            if any(True for _ in module.parameters(recurse=False)) and not isinstance(module, _RESIZABLE):
                allowed = ", ".join(t.__name__ for t in _RESIZABLE)
                raise ValueError(
                    f"compression=prune_structured: cannot resize {type(module).__name__} ({name}); supported: {allowed}"
                )
        for name, layer in _prunable_layers(model):
            channels = _out_channels(layer)
            if int(channels * (1 - self.amount)) < 1:  # the count torch-pruning keeps
                most = 1 - 1 / channels
                raise ValueError(
                    f"compression.amount={self.amount}: would remove every channel of layer {name} "
                    f"({channels} channels); allowed: 0 <= amount <= {most:.4g} for this model"
                )

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Prune channels by norm, fine-tune the smaller network, store it dense."""
        self.check(model, ctx)
        model = model.cpu().eval()
        layers = [layer for _, layer in _prunable_layers(model)]
        classifier = [m for m in model.modules() if isinstance(m, _LAYERS)][-1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner = tp.pruner.MetaPruner(
                model,
                ctx.task.x_train[:2],
                importance=tp.importance.MagnitudeImportance(p=self.norm),
                pruning_ratio=self.amount,
                ignored_layers=[classifier],
            )
            pruner.step()
        if layers and self.finetune_epochs:
            ctx.finetune(model, self.finetune_epochs, step_hook=mask_hook(existing_zeros(model)))
        model = model.cpu().eval()
        return Compressed(module=model, kind="structured", payload=encode_state(model.state_dict()), latency_kind="real")


def _resize(module: nn.Module, state: dict[str, torch.Tensor], prefix: str) -> None:
    """Give ``module`` the shapes its weights have in ``state`` (fresh tensors, to be loaded)."""
    weight = state[f"{prefix}weight"]
    if isinstance(module, nn.Linear):
        module.in_features, module.out_features = weight.shape[1], weight.shape[0]
    elif isinstance(module, _CONV):
        module.out_channels, module.in_channels = weight.shape[0], weight.shape[1] * module.groups
    else:  # batch norm
        module.num_features = weight.shape[0]
    for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
        new = torch.empty_like(state[f"{prefix}{name}"])
        if isinstance(tensor, nn.Parameter):
            setattr(module, name, nn.Parameter(new))
        else:
            setattr(module, name, new)


@register_loader("structured")
def _load_structured(spec: ModelSpec, payload: dict[str, Any]) -> nn.Module:
    model = spec.build()
    state = decode_state(payload)
    for name, module in model.named_modules():
        if isinstance(module, _RESIZABLE):
            _resize(module, state, f"{name}." if name else "")
    model.load_state_dict(state)
    return model
