"""Knobs for one option of a group, applied only to the trials that choose that option.

A grid over options of one group cannot set a knob only one of them has:
``-m compression=none,qat compression.bits=4`` fails on ``none``, which has no ``bits``. The
``options`` node scopes a knob to its option::

    python -m sweeper -m compression=none,qat +options.compression.qat.bits=4

``options.<group>.<option>.<key>`` is merged into ``<group>`` in the trials that chose
``<group>=<option>`` and ignored in the others. A group, option or key that does not exist is
a one-line error naming the key and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from sweeper.configs import flatten
from sweeper.errors import ConfigError

__all__ = ["apply_option_knobs", "group_options"]


def group_options(group: str) -> list[str] | None:
    """The options of a config group as Hydra's config search path holds them (None outside Hydra)."""
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        return None
    loader = GlobalHydra.instance().config_loader()
    return sorted(loader.get_group_options(group))


def apply_option_knobs(cfg: DictConfig, choices: Mapping[str, str], groups: tuple[str, ...]) -> None:
    """Merge ``cfg.options.<group>.<chosen option>`` into ``cfg.<group>`` in place; check every entry.

    ``choices`` are Hydra's choices of the job (``group -> option``).

    Raises:
        ConfigError: an unknown group or option, or a key the option's config does not have.
    """
    options = cfg.get("options")
    if not options:
        return
    plain = OmegaConf.to_container(options, resolve=True)
    if not isinstance(plain, dict):
        raise ConfigError(f"options={plain!r}: must be a mapping options.<group>.<option>.<key>=value")
    for key, per_option in plain.items():
        group = str(key)
        if group not in groups:
            raise ConfigError(f"options.{group}: not a config group; allowed: {', '.join(groups)}")
        if not isinstance(per_option, dict):
            raise ConfigError(f"options.{group}={per_option!r}: must be options.{group}.<option>.<key>=value")
        known = group_options(group)
        for option, knobs in per_option.items():
            if known is not None and option not in known:
                raise ConfigError(f"options.{group}.{option}: no such {group} option; allowed: {', '.join(known)}")
            if choices.get(group) != option:
                continue
            node = cfg[group]
            if not isinstance(knobs, dict):
                raise ConfigError(f"options.{group}.{option}={knobs!r}: must be options.{group}.{option}.<key>=value")
            for key, value in flatten(knobs).items():
                if OmegaConf.select(node, key, default=_ABSENT) is _ABSENT:
                    have = ", ".join(sorted(k for k in flatten(plain_node(node)) if k != "_target_"))
                    raise ConfigError(
                        f"options.{group}.{option}.{key}: {group}={option} has no key {key}; its keys: {have or 'none'}"
                    )
                with open_dict(node):
                    OmegaConf.update(node, key, value, merge=True)


_ABSENT = object()


def plain_node(node: DictConfig) -> dict[str, Any]:
    """A group's config as a plain mapping (unresolved: only its keys matter here)."""
    container = OmegaConf.to_container(node)
    return {str(k): v for k, v in container.items()} if isinstance(container, dict) else {}
