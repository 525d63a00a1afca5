"""Plain views of a composed config: a resolved ``dict``, and dotted keys for MLflow params and knobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

__all__ = ["flatten", "plain_dict"]


def plain_dict(node: Any) -> dict[str, Any]:
    """A config node as a plain, resolved ``dict`` with string keys."""
    container = OmegaConf.to_container(node, resolve=True)
    if not isinstance(container, dict):
        raise TypeError(f"expected a mapping, got {type(container).__name__}")
    return {str(key): value for key, value in container.items()}


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are kept as their string form.

    Example:
        >>> flatten({"optimizer": {"lr": 0.1, "betas": [0.9, 0.99]}, "seed": 0})
        {'optimizer.lr': 0.1, 'optimizer.betas': [0.9, 0.99], 'seed': 0}
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
