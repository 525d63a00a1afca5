"""The deployable artifact: one file that rebuilds the compressed network without running code.

An artifact is a ``torch.save`` of plain containers and tensors::

    {"format": "sweeper-artifact/1", "kind": "dense", "loader": "sweeper.artifact",
     "model": <ModelSpec dict>, "payload": {...}}

``kind`` names the loader that turns the payload back into a module (dense weights,
sparse weights, packed low-bit integers, ...); ``loader`` is the module that registers it,
imported on demand, so reading an artifact needs the file and the model's importable
``_target_`` alone, not every compression method. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object
from torch import Tensor, nn

__all__ = [
    "ModelSpec",
    "dense_payload",
    "load_artifact",
    "load_state",
    "register_loader",
    "save_artifact",
    "serialized_size",
]

FORMAT = "sweeper-artifact/1"
Loader = Callable[["ModelSpec", dict[str, Any]], nn.Module]
_LOADERS: dict[str, Loader] = {}


@dataclass(frozen=True)
class ModelSpec:
    """Enough to rebuild the architecture: the builder's path, its keyword arguments, and the
    size changes a method made to the built network (structured pruning), as plain data.

    Attributes:
        target: the builder (a model plug-in or a built-in), an importable path.
        kwargs: its keyword arguments.
        resized: module name -> integer size attributes to set (``out_features``, ``embed_dim``, ...).
        shapes: parameter/buffer name -> its shape, where it differs from the built network's.
    """

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    resized: dict[str, dict[str, Any]] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)

    def build(self, **overrides: Any) -> nn.Module:
        """Call the builder with the stored arguments, then give the network its recorded sizes
        (fresh zero tensors of the recorded shapes: a state dict is loaded next)."""
        model = get_object(self.target)(**{**self.kwargs, **overrides})
        for name, attrs in self.resized.items():
            module = model.get_submodule(name)
            for attr, value in attrs.items():
                setattr(module, attr, tuple(value) if isinstance(getattr(module, attr, None), tuple) else value)
        for key, shape in self.shapes.items():
            module_name, _, attr = key.rpartition(".")
            module = model.get_submodule(module_name)
            current = getattr(module, attr)
            fresh = torch.zeros(shape, dtype=current.dtype, device=current.device)
            # a buffer stays a buffer: setattr on a registered buffer's name replaces the buffer
            setattr(
                module,
                attr,
                nn.Parameter(fresh, requires_grad=current.requires_grad)
                if isinstance(current, nn.Parameter)
                else fresh,
            )
        return model


def register_loader(kind: str) -> Callable[[Loader], Loader]:
    """Decorator: register the function that rebuilds artifacts of ``kind``."""

    def decorate(loader: Loader) -> Loader:
        _LOADERS[kind] = loader
        return loader

    return decorate


def _document(kind: str, spec: ModelSpec, payload: dict[str, Any]) -> dict[str, Any]:
    loader = _LOADERS[kind].__module__
    return {"format": FORMAT, "kind": kind, "loader": loader, "model": asdict(spec), "payload": payload}


def _loader(kind: str, module: str | None, path: Path) -> Loader:
    """The registered loader of ``kind``, importing the module that registers it if needed."""
    if kind not in _LOADERS and module:
        importlib.import_module(module)
    if kind not in _LOADERS:
        raise ValueError(f"{path}: unknown artifact kind {kind!r}; known: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[kind]


def save_artifact(path: Path, kind: str, spec: ModelSpec, payload: dict[str, Any]) -> int:
    """Write the artifact; return its size in bytes."""
    if kind not in _LOADERS:
        raise ValueError(f"artifact kind {kind!r} has no loader; known: {', '.join(sorted(_LOADERS))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # through a handle: the archive's inner name, and so its size, is the same
        torch.save(
            _document(kind, spec, payload), handle
        )  # whatever the file is called (a path names it after the file)
    return path.stat().st_size


def serialized_size(kind: str, spec: ModelSpec, payload: dict[str, Any]) -> int:
    """Bytes the artifact takes on disk, whatever its file is called (a scratch copy is written)."""
    with tempfile.TemporaryDirectory() as scratch:
        return save_artifact(Path(scratch) / "model.pt", kind, spec, payload)


def load_artifact(path: Path) -> nn.Module:
    """Rebuild the module from an artifact file, in eval mode on the CPU."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"artifact not found: {path}")
    document = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    loader = _loader(document["kind"], document.get("loader"), Path(path))
    return loader(ModelSpec(**document["model"]), document["payload"]).eval()


def load_state(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """Load a freshly read or decoded ``state`` into a just-built ``model``: tensors of the dtype the model
    holds are taken as they are (``assign``), so the weights are not held twice (the built network's plus the
    state's) while a large network loads; the model's own tensors are given up. Returns ``model``."""
    own = model.state_dict()
    assign = all(
        not isinstance(value, Tensor) or key not in own or own[key].dtype == value.dtype for key, value in state.items()
    )
    model.load_state_dict(state, assign=assign)
    if assign:
        _retie(model)
    return model


def _retie(model: nn.Module) -> None:
    """Parameters that ``assign`` loaded from one tensor (weights the network ties, such as a language model's
    embedding and output layer) become one parameter again, as they were when the artifact was written."""
    first: dict[tuple[int, tuple[int, ...], tuple[int, ...], torch.dtype], nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None or param.is_meta:
                continue
            tied = first.setdefault((param.data_ptr(), tuple(param.shape), param.stride(), param.dtype), param)
            if tied is not param:
                module._parameters[name] = tied


@register_loader("dense")
def _load_dense(spec: ModelSpec, payload: dict[str, Any]) -> nn.Module:
    return load_state(spec.build(), payload["state_dict"])


def dense_payload(model: nn.Module, *, copy: bool = True) -> dict[str, Any]:
    """Payload of a ``dense`` artifact: the fp32 state dict, detached, on the CPU. Tensors the model ties
    (a language model's input and output embeddings) stay one tensor, stored once.

    ``copy=False``: the payload shares the model's tensors (no second copy of a large network), for a payload
    written before the model changes (a size); a tensor that is a view into a larger storage is still
    copied, so the bytes written are the same either way."""
    copies: dict[tuple[int, torch.Size, torch.dtype], Tensor] = {}
    state = {}
    for key, value in model.state_dict().items():
        tie = (value.data_ptr(), value.shape, value.dtype)
        if tie not in copies:
            tensor = value.detach().cpu()
            exact = tensor.storage_offset() == 0 and tensor.untyped_storage().nbytes() == tensor.nbytes
            copies[tie] = tensor if not copy and exact and tensor.is_contiguous() else tensor.clone()
        state[key] = copies[tie]
    return {"state_dict": state}
