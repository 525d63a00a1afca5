"""Which weight tensors a method acts on, in any ``nn.Module``: Linear, Conv, attention, (opt-in) embeddings;
and the keep-masks that hold pruned weights at zero while a network fine-tunes.

Unstructured pruning and quantization-aware training both work on "the weight matrices of
the network", wherever they sit: top-level layers, residual blocks, the projections inside
``nn.MultiheadAttention`` (its packed ``in_proj_weight``, or ``q/k/v_proj_weight`` when the key
and value widths differ, and its ``out_proj``), and embedding tables when asked. Users keep
parts dense with ``include`` / ``exclude`` lists of module-name patterns (``fnmatch``, matched
against qualified module names such as ``encoder.layers.0.self_attn`` or ``head``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sweeper.training.loop import StepHook

__all__ = [
    "WeightRef",
    "WeightSelection",
    "apply_masks",
    "existing_zeros",
    "mask_hook",
    "prunable_weights",
    "silence_dead_channels",
    "weight_refs",
]

_MATRIX_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


@dataclass(frozen=True)
class WeightRef:
    """One weight tensor: its parameter name, the module that holds it and the attribute."""

    name: str
    module_name: str
    module: nn.Module
    attr: str

    @property
    def tensor(self) -> Tensor:
        """The weight as the module uses it now (a parametrized weight's current value)."""
        return getattr(self.module, self.attr)


@dataclass(frozen=True)
class WeightSelection:
    """Which weights to act on.

    Args:
        embeddings: include the tables of ``nn.Embedding`` / ``nn.EmbeddingBag``.
        include: module-name patterns to act on (empty: every supported layer).
        exclude: module-name patterns to keep dense (applied after ``include``).
    """

    embeddings: bool = False
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()

    def __post_init__(self) -> None:
        for key in ("include", "exclude"):
            patterns = getattr(self, key)
            if isinstance(patterns, str) or not isinstance(patterns, Sequence):
                raise ValueError(f"compression.{key}={patterns!r}: must be a list of module-name patterns, e.g. [head]")
            object.__setattr__(self, key, tuple(str(p) for p in patterns))  # [0] names module "0" of a Sequential
        if not isinstance(self.embeddings, bool):
            raise ValueError(f"compression.embeddings={self.embeddings!r}: allowed: true, false")

    def selects(self, module_name: str) -> bool:
        """Whether the module called ``module_name`` is acted on."""
        included = not self.include or any(fnmatch.fnmatchcase(module_name, p) for p in self.include)
        return included and not any(fnmatch.fnmatchcase(module_name, p) for p in self.exclude)


def _weights_of(module: nn.Module, embeddings: bool) -> list[str]:
    if isinstance(module, _MATRIX_LAYERS) or (embeddings and isinstance(module, _EMBEDDINGS)):
        return ["weight"]
    if isinstance(module, nn.MultiheadAttention):
        return [a for a in _ATTENTION_WEIGHTS if getattr(module, a, None) is not None]
    return []


def weight_refs(
    model: nn.Module, selection: WeightSelection | None = None, *, method: str = "prune"
) -> list[WeightRef]:
    """The weight tensors of ``model`` that ``selection`` picks, in module order.

    Raises:
        ValueError: a pattern matches no module, or nothing is left to act on (the message
            names the patterns and some module names to choose from).

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> [r.name for r in weight_refs(model, WeightSelection(exclude=["2"]))]
        ['0.weight']
    """
    selection = selection or WeightSelection()
    names = [name for name, _ in model.named_modules()]
    for key in ("include", "exclude"):
        for pattern in getattr(selection, key):
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                shown = ", ".join(n for n in names if n)[:200]
                raise ValueError(f"compression.{key}: pattern {pattern!r} matches no module; modules: {shown}")
    refs = [
        WeightRef(f"{name}.{attr}" if name else attr, name, module, attr)
        for name, module in model.named_modules()
        if selection.selects(name)
        for attr in _weights_of(module, selection.embeddings)
    ]
    if not refs:
        kinds = "Linear, Conv, MultiheadAttention" + (", Embedding" if selection.embeddings else "")
        raise ValueError(
            f"compression={method}: {type(model).__name__} has no {kinds} weight to act on"
            + (
                f" with include={list(selection.include)} exclude={list(selection.exclude)}"
                if selection.include or selection.exclude
                else ""
            )
        )
    return refs


def prunable_weights(model: nn.Module, selection: WeightSelection | None = None) -> dict[str, Tensor]:
    """The selected weight tensors (default: every Linear, Conv and attention matrix), by parameter name.

    Raises:
        ValueError: nothing to prune, or a pattern of ``selection`` matches no module.
    """
    return {ref.name: ref.tensor for ref in weight_refs(model, selection)}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Zero the pruned weights in place."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device))


def mask_hook(masks: dict[str, Tensor]) -> StepHook:
    """A step hook that re-applies ``masks`` after every optimizer step: the mask stays fixed."""

    resolved: list[tuple[Tensor, Tensor]] = []  # (parameter, mask on its device), found on the first step

    @torch.no_grad()
    def hook(model: nn.Module, _step: int) -> None:
        if not resolved:
            params = dict(model.named_parameters())
            resolved.extend((params[name], mask.to(params[name].device)) for name, mask in masks.items())
        for param, mask in resolved:
            param.mul_(mask)

    return hook


def existing_zeros(model: nn.Module) -> dict[str, Tensor]:
    """Keep-masks of the weights that are non-zero now: later fine-tuning keeps earlier pruning."""
    return {name: w.detach() != 0 for name, w in prunable_weights(model, WeightSelection(embeddings=True)).items()}


@torch.no_grad()
def silence_dead_channels(model: nn.Module) -> int:
    """Zero the scale of BatchNorm channels whose input is constant; return how many there were.

    Pruning can leave a channel with no weights left before a BatchNorm: its running variance
    falls to ~0 and the norm multiplies whatever deviation reaches it (float rounding, int8
    quantization error) by up to ``gamma / sqrt(eps)``, hundreds of times. Such a channel's
    expected output is its bias ``beta``; with ``gamma = 0`` it is exactly that. A channel
    counts as dead when its running variance is at most the norm's ``eps``.
    """
    dead = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine and module.running_var is not None:
            channels = module.running_var <= module.eps
            module.weight[channels] = 0.0
            dead += int(channels.sum())
    return dead
