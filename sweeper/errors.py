"""Errors that mean "fix your input", and their one-line form for the command line."""

from __future__ import annotations

__all__ = ["ConfigError", "ResultsNotLogged", "one_line"]


class ConfigError(ValueError):
    """A config value, key or plug-in is wrong; the message names the key and what is allowed."""


class ResultsNotLogged(RuntimeError):
    """A finished trial whose results the tracking store did not take; they are kept on disk (the message
    says where and how to log them later)."""


def one_line(exc: BaseException) -> str:
    """A single line for the user: Hydra's composition errors condensed, others as they are."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, MissingConfigException) and exc.options is not None and exc.missing_cfg_file:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return f"{group}={option}: unknown option; allowed: {', '.join(sorted(exc.options))}"
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        parent = cause.parent_node
        allowed = ""
        if parent is not None and hasattr(parent, "keys"):
            allowed = f"; allowed: {', '.join(sorted(str(k) for k in parent))}"
        return f"{cause.full_key}: unknown key{allowed} (add a key with +{cause.full_key}=...)"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
