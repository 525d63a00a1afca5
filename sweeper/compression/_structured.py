"""Structured pruning: whole channels removed from any network of standard layers, so it is physically smaller.

**What is pruned.** torch-pruning's dependency graph, traced on two real training inputs
(float features or int64 token ids), groups the tensor dimensions that must shrink together:
a Linear/Conv layer's outputs with the inputs of the layers that read them, the BatchNorm,
LayerNorm and GroupNorm widths in between, every branch of a residual sum, the embedding
dimension of ``nn.Embedding`` / ``nn.EmbeddingBag``, and learned ``nn.Parameter`` tensors
added or multiplied onto the features (positional embeddings, layer scales: pruned along
their last non-singleton dimension). Every group starts at a Linear, Conv or embedding
layer and loses ``amount`` of its channels (``int(width * (1 - amount))`` are kept), those of
smallest L1 or L2 norm summed over the whole group (``MagnitudeImportance``). The output layer
keeps its outputs: the Linear/Conv whose output tensor the model returns (found by running a
batch; else the last Linear/Conv that ran), and so do the layers coupled to them (its inputs
shrink with the layers before it).

**Attention.** Each ``nn.MultiheadAttention`` is declared to torch-pruning with its head
count, so its width splits into ``num_heads`` equal channel groups and the same positions are
removed inside every head: ``num_heads`` stays, ``head_dim`` shrinks, ``embed_dim`` stays a
multiple of ``num_heads``. torch-pruning ties the attention width to the residual stream it
reads (input, ``out_proj`` and packed q/k/v projections shrink together). ``nn.TransformerEncoder``
runs its fused eval-mode fast path on the smaller sizes.

**Checks** (:meth:`StructuredPruning.check`, before training, on a deep copy: the same graph
build, pruning and a forward pass, nothing trained): ``ValueError`` when ``amount`` would
remove every channel of some group, :class:`UnsupportedLayer` for a ``torch.nn`` layer holding
parameters that torch-pruning has no pruner for (e.g. ``nn.Bilinear``, ``nn.GRU``; also ``nn.LSTM``,
whose pruner mis-indexes the gate blocks, and attention with separate key/value widths), a
parameter outside torch-pruning's layers that feeds anything but an element-wise
add/sub/mul/div (its channels cannot be mapped), a graph that cannot be built, or a pruned
network that no longer runs (the layer that failed is named).

**Artifact** (``structured``): the dense state dict of the smaller network. Its architecture is
the model spec plus what pruning changed, recorded in the spec (:class:`~sweeper.artifact.ModelSpec`
``resized`` and ``shapes``): per module the integer attributes (``out_features``, ``num_features``,
``normalized_shape``, ``embedding_dim``, ``embed_dim``, ``head_dim``, ``kdim``, ...; found by comparing
every module's integer attributes before and after) and the new shape of every parameter or
buffer that shrank. ``ModelSpec.build`` applies them, so the loader, and any later pipeline stage
(int8, QAT, unstructured pruning) whose loader builds the spec, rebuilds the smaller network:
plain data only, no code read from the file.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch_pruning as tp
from torch import Tensor, nn

from sweeper.artifact import ModelSpec, register_loader
from sweeper.compression import MethodFacts
from sweeper.compression._base import Compressed, CompressionContext, UnsupportedLayer, check_epochs, check_fraction
from sweeper.compression._storage import decode_state, encode_state
from sweeper.compression._targets import existing_zeros, mask_hook
from sweeper.data import Task

__all__ = ["StructuredPruning"]

_METHOD = "prune_structured"
_OUTPUT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)
_ROOTS = (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding, nn.EmbeddingBag)  # where groups start
# Layers torch-pruning resizes: those of its built-in pruners, plus EmbeddingBag (pruned like Embedding).
_SUPPORTED = tuple(
    sorted(
        {cls for op in tp.pruner.function.PrunerBox if isinstance(cls := tp.ops.type2class(op), type)} - {nn.Parameter}
        | {nn.EmbeddingBag},
        key=lambda cls: cls.__name__,
    )
)
_SUPPORTED_NAMES = ", ".join(sorted(c.__name__.lstrip("_").removesuffix("Nd") for c in _SUPPORTED if c is not nn.LSTM))
_PARAMETER_CONTAINERS = (nn.ParameterList, nn.ParameterDict)
_ELEMENTWISE_OPS = frozenset({"AddBackward0", "SubBackward0", "MulBackward0", "DivBackward0"})


class _EmbeddingBagPruner(tp.pruner.function.EmbeddingPruner):
    """torch-pruning's Embedding pruner for ``nn.EmbeddingBag``: the same ``weight`` and ``embedding_dim``."""

    TARGET_MODULES = nn.EmbeddingBag


@dataclass
class _Group:
    """One set of coupled channels of the dependency graph and where it is pruned from.

    Attributes:
        layer: the first module (in model order) whose outputs shrink with the group, for messages.
        root: the module torch-pruning prunes the group from.
        pruning_fn: its out- or in-channel pruning function.
        width: channels per channel group, the unit ``amount`` applies to.
        groups: channel groups (the heads of an attention, the groups of a conv / GroupNorm).
        full: the group with every channel, for the importance.
    """

    layer: str
    root: nn.Module
    pruning_fn: Callable[..., Any]
    width: int
    groups: int
    full: Any  # tp.dependency.Group

    def kept(self, amount: float) -> int:
        """Channels left per channel group after removing ``amount`` of them (torch-pruning's count)."""
        return int(self.width * (1 - amount))


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def _naming_failures(model: nn.Module, what: str) -> Iterator[None]:
    """Turn an error into :class:`UnsupportedLayer` naming the innermost module running when it was raised.

    An error outside any module's forward (inside torch-pruning) names the model.
    """
    running: list[str] = []

    def leave(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        running.pop()  # a hook returning a value would replace the module's output

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda _m, _a, name=name: running.append(name)))
        handles.append(module.register_forward_hook(leave))
    try:
        yield
    except UnsupportedLayer:
        raise
    except Exception as exc:
        name = running[-1] if running else ""
        raise UnsupportedLayer(_METHOD, name, model.get_submodule(name), f"{what}: {_one_line(exc)}") from exc
    finally:
        for handle in handles:
            handle.remove()


def _check_layer_types(model: nn.Module) -> None:
    """:class:`UnsupportedLayer` for torch layers with parameters that torch-pruning cannot resize."""
    for name, module in model.named_modules():
        reason = None
        if isinstance(module, nn.MultiheadAttention) and not module._qkv_same_embed_dim:
            reason = "kdim/vdim differ from embed_dim; torch-pruning resizes packed q/k/v projections only"
        elif isinstance(module, nn.LSTM):  # its pruner indexes the four gate blocks inconsistently
            reason = "torch-pruning cannot resize the gate weights of an LSTM consistently"
        elif (
            module is not model
            and not isinstance(module, _SUPPORTED + _PARAMETER_CONTAINERS)
            and type(module).__module__.startswith("torch.")
            and any(True for _ in module.parameters(recurse=False))
        ):
            reason = f"torch-pruning has no pruner for {type(module).__name__}; it resizes {_SUPPORTED_NAMES}"
        if reason:
            raise UnsupportedLayer(_METHOD, name, module, reason)


def _loose_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter, int]]:
    """Parameters outside torch-pruning's layers (positional embeddings, scales) and the dimension they lose.

    Returns:
        ``(qualified name, parameter, dim)``, ``dim`` the last non-singleton one (all-singleton
        parameters never change and are left out).
    """
    wrapped = {id(p) for module in model.modules() if isinstance(module, _SUPPORTED) for p in module.parameters()}
    loose = []
    for name, param in model.named_parameters():
        dims = [d for d, size in enumerate(param.shape) if size > 1]
        if id(param) not in wrapped and dims:
            loose.append((name, param, dims[-1]))
    return loose


def _output_layer(model: nn.Module, example: Tensor) -> nn.Module:
    """The layer whose outputs must stay: the Linear/Conv whose output tensor the model returns, else the last that ran."""
    ran: list[tuple[nn.Module, Any]] = []
    handles = [
        m.register_forward_hook(lambda module, _i, out: ran.append((module, out)))
        for m in model.modules()
        if isinstance(m, _OUTPUT_LAYERS)
    ]
    try:
        with torch.no_grad():
            output = model(example)
    finally:
        for handle in handles:
            handle.remove()
    if not ran:
        raise UnsupportedLayer(_METHOD, "", model, "no Linear or Conv layer runs in forward: nothing to prune from")
    return next((module for module, out in reversed(ran) if out is output), ran[-1][0])


def _dependency_graph(model: nn.Module, example: Tensor, output_layer: nn.Module, norm: int) -> tp.pruner.MetaPruner:
    """torch-pruning's pruner with the graph of ``model`` traced on ``example`` (not stepped: see :func:`_groups`)."""
    loose = _loose_parameters(model)
    # torch-pruning traces the autograd graph: gradients on, whatever the caller's mode
    with _naming_failures(model, "torch-pruning cannot build its dependency graph"), torch.enable_grad():
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.MagnitudeImportance(p=norm),
            ignored_layers=[output_layer],
            root_module_types=list(_ROOTS),
            num_heads={m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)},
            unwrapped_parameters=[(param, dim) for _, param, dim in loose],
            customized_pruners={nn.EmbeddingBag: _EmbeddingBagPruner()},
            in_channel_groups={},  # fresh dicts: torch-pruning's defaults are shared between instances
            out_channel_groups={},
        )
    for name, param, _ in loose:  # torch-pruning maps a loose parameter's channels through element-wise ops only
        node = pruner.DG.module2node.get(param)
        for consumer in node.outputs if node is not None else ():
            op = consumer.grad_fn.name() if hasattr(consumer.grad_fn, "name") else type(consumer.module).__name__
            if not isinstance(consumer.module, _SUPPORTED) and op not in _ELEMENTWISE_OPS:
                owner, _, attr = name.rpartition(".")
                reason = (
                    f"its parameter {attr!r} {tuple(param.shape)} feeds {op}, whose channels torch-pruning cannot map "
                    f"(it follows loose parameters through element-wise add/sub/mul/div only)"
                )
                raise UnsupportedLayer(_METHOD, owner, model.get_submodule(owner), reason)
    return pruner


def _groups(pruner: tp.pruner.MetaPruner, model: nn.Module) -> list[_Group]:
    """The prunable groups, in model order, enumerated as ``MetaPruner`` does.

    The pruner is not stepped: in local pruning it keys each group's ranking by its root's
    name, and an attention group (re-rooted at a downstream Linear's inputs) collides with
    that Linear's own group, so the residual/attention width would silently stay whole.
    """
    graph = pruner.DG
    names = {module: name for name, module in model.named_modules()}
    order = {module: i for i, module in enumerate(names)}
    found = []
    for group in graph.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
        if pruner._is_atten_group(group)[0]:
            group = pruner._downstream_node_as_root_if_attention(group)  # index mapping from a downstream Linear
            if group is None:
                continue
        root, pruning_fn = group[0].dep.target.module, group[0].dep.handler
        is_out = graph.is_out_channel_pruning_fn(pruning_fn)
        width = graph.get_out_channels(root) if is_out else graph.get_in_channels(root)
        channel_groups = pruner._get_channel_groups(group)
        shrinking = [  # the modules whose outputs the group narrows
            dep.target.module
            for dep, _ in group
            if isinstance(dep.target.module, nn.Module)
            and dep.target.module in names
            and graph.is_out_channel_pruning_fn(dep.handler)
        ]
        layer = min(shrinking, key=order.__getitem__) if shrinking else root
        found.append(
            (order[layer], _Group(names[layer], root, pruning_fn, width // channel_groups, channel_groups, group))
        )
    return [group for _, group in sorted(found, key=lambda item: item[0])]


def _size_attributes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Every integer (or tuple of integers) attribute of every module: the sizes pruning may change."""

    def is_size(value: Any) -> bool:
        return isinstance(value, int) or (isinstance(value, tuple) and all(isinstance(v, int) for v in value))

    return {
        name: {key: value for key, value in vars(module).items() if key != "training" and is_size(value)}
        for name, module in model.named_modules()
    }


def _changed(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The attributes whose values differ, as JSON values (tuples as lists), by module name."""
    changed: dict[str, dict[str, Any]] = {}
    for name, attrs in after.items():
        old = before.get(name, {})
        diff = {key: list(v) if isinstance(v, tuple) else v for key, v in attrs.items() if old.get(key) != v}
        if diff:
            changed[name] = diff
    return changed


class StructuredPruning:
    """``compression=prune_structured``: remove a fraction of the channels of every coupled group, then fine-tune.

    Args:
        amount: fraction of the channels of each group removed (per head for attention), in [0, 1).
        norm: importance of a channel, the ``1`` (L1) or ``2`` (L2) norm of its weights.
        finetune_epochs: epochs of fine-tuning of the smaller network.
    """

    facts: ClassVar[MethodFacts] = MethodFacts("pruning", "fine-tunes")

    def __init__(self, *, amount: float = 0.5, norm: int = 2, finetune_epochs: int = 5) -> None:
        self.amount = check_fraction(amount)
        if norm not in (1, 2):
            raise ValueError(f"compression.norm={norm}: allowed: 1, 2")
        self.norm = norm
        self.finetune_epochs = check_epochs(finetune_epochs)

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Prune a deep copy of the untrained model as :meth:`compress` will, and run it once.

        Raises:
            ValueError: ``amount`` would remove every channel of some layer.
            UnsupportedLayer: a layer torch-pruning cannot resize, or a pruned network that fails.
        """
        self._prune(copy.deepcopy(model).cpu().eval(), ctx.task)

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Prune channels by norm, fine-tune the smaller network, store it dense with its new sizes."""
        model = model.cpu().eval()
        shapes_before = {key: tuple(t.shape) for key, t in model.state_dict().items()}
        resized = self._prune(model, ctx.task)
        if self.finetune_epochs:
            ctx.finetune(model, self.finetune_epochs, step_hook=mask_hook(existing_zeros(model)))
        model = model.cpu().eval()
        shapes = {
            key: list(t.shape) for key, t in model.state_dict().items() if tuple(t.shape) != shapes_before.get(key)
        }
        spec = replace(ctx.spec, resized=resized, shapes=shapes)  # later stages and the loader rebuild this network
        return Compressed(
            module=model, kind="structured", payload=encode_state(model.state_dict()), latency_kind="real", spec=spec
        )

    def _prune(self, model: nn.Module, task: Task) -> dict[str, dict[str, Any]]:
        """Prune ``model`` in place (CPU, eval mode); return the changed size attributes by module name."""
        example = task.x_train[:2].cpu()  # real inputs: float features or int64 token ids
        _check_layer_types(model)
        output_layer = _output_layer(model, example)
        before = _size_attributes(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch-pruning's notes on ops it treats as element-wise
            pruner = _dependency_graph(model, example, output_layer, self.norm)
            groups = _groups(pruner, model)
            self._check_fits(groups)
            removals = [(group, self._lowest(pruner, group)) for group in groups]  # ranked before any pruning
            for group, idxs in removals:
                if not idxs:
                    continue
                try:
                    pruner.DG.get_pruning_group(group.root, group.pruning_fn, idxs).prune()
                except Exception as exc:
                    reason = f"torch-pruning failed to remove its channels: {_one_line(exc)}"
                    raise UnsupportedLayer(_METHOD, group.layer, model.get_submodule(group.layer), reason) from exc
        with _naming_failures(model, "the pruned network does not run"), torch.no_grad():
            output = model(example)
        if tuple(output.shape) != (len(example), task.num_classes):
            reason = f"the pruned network outputs {tuple(output.shape)}, expected {(len(example), task.num_classes)}"
            raise UnsupportedLayer(_METHOD, "", model, reason)
        return _changed(before, _size_attributes(model))

    def _check_fits(self, groups: list[_Group]) -> None:
        """``ValueError`` naming the first layer that ``amount`` would leave without channels."""
        empty = [g for g in groups if g.kept(self.amount) < 1]
        if empty:
            group = empty[0]
            most = math.floor(min(1 - 1 / g.width for g in groups) * 10_000) / 10_000
            per = f"{group.width} channels" + (f" in each of {group.groups} groups" if group.groups > 1 else "")
            raise ValueError(
                f"compression.amount={self.amount}: would remove every channel of layer {group.layer} ({per}); "
                f"allowed: 0 <= amount <= {most:g} for this model"
            )

    def _lowest(self, pruner: tp.pruner.MetaPruner, group: _Group) -> list[int]:
        """The channels of ``group`` to remove: the lowest-norm ones, the same positions in every channel group."""
        n_remove = group.width - group.kept(self.amount)
        importance = pruner.estimate_importance(group.full) if n_remove else None
        if importance is None:
            return []
        per_position = importance.view(group.groups, -1).mean(dim=0)  # averaged over heads / conv groups
        lowest = torch.topk(per_position, n_remove, largest=False).indices
        return sorted(int(i) + g * per_position.numel() for g in range(group.groups) for i in lowest)


@register_loader("structured")
def _load_structured(spec: ModelSpec, payload: dict[str, Any]) -> nn.Module:
    """The pruned architecture (the spec records its sizes), then its dense state dict."""
    model = spec.build()
    model.load_state_dict(decode_state(payload))
    return model
