"""Optimizer construction from the `optimizer` config group.

An optimizer preset is a partial (``_partial_: true``) whose call with the model's
parameters returns one ``torch.optim.Optimizer`` or a list of them (Muon needs AdamW
beside it for the parameters that are not 2-D matrices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.optim import Optimizer

__all__ = ["build_optimizers", "muon_with_adamw"]

OptimizerFactory = Callable[[list[nn.Parameter]], "Optimizer | Sequence[Optimizer]"]


def build_optimizers(factory: OptimizerFactory, model: nn.Module) -> list[Optimizer]:
    """Call an optimizer factory on the model's trainable parameters; always return a list."""
    params = [p for p in model.parameters() if p.requires_grad]
    built = factory(params)
    optimizers = [built] if isinstance(built, Optimizer) else list(built)
    if not optimizers or not all(isinstance(o, Optimizer) for o in optimizers):
        raise TypeError(f"optimizer factory {factory!r} must return a torch.optim.Optimizer or a list of them")
    return optimizers


def muon_with_adamw(
    params: Iterable[nn.Parameter],
    *,
    lr: float = 0.02,
    momentum: float = 0.95,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    adamw_lr: float = 1e-3,
    adamw_betas: Sequence[float] = (0.9, 0.999),
    adamw_weight_decay: float = 0.0,
) -> list[Optimizer]:
    """``torch.optim.Muon`` on the 2-D weight matrices, ``AdamW`` on everything else.

    Muon orthogonalizes the update of a matrix and refuses other shapes (biases, conv
    kernels), hence the split.
    """
    params = list(params)
    matrices = [p for p in params if p.ndim == 2]
    others = [p for p in params if p.ndim != 2]
    optimizers: list[Optimizer] = []
    if matrices:
        optimizers.append(
            torch.optim.Muon(matrices, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        )
    if others:
        optimizers.append(
            torch.optim.AdamW(
                others,
                lr=adamw_lr,
                betas=(float(adamw_betas[0]), float(adamw_betas[1])),
                weight_decay=adamw_weight_decay,
            )
        )
    return optimizers
