"""The package's layout, as README.md draws it: floors that import only the floors below them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "sweeper"

# Bottom to top; a module imports its own floor or lower ones (README.md, "Architecture").
FLOORS = [
    {"errors", "configs", "metrics", "scoring", "data", "streams", "artifact", "models", "hf", "cache", "progress"},
    {"training", "tasks", "tracking"},
    {"compression"},
    {"search"},
    {"trial"},
    {"sweep"},
    {"report"},
    {"__main__", "sensitivity", "testing", "conf"},
]
# where a sweep hands values to its jobs and Hydra's runtime config is read: nowhere else
SEAMS = {"sweeper/__main__.py", "sweeper/trial/context.py"}


def _floor(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    return next(i for i, names in enumerate(FLOORS) if top in names)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sweeper.") and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sweeper."))
    return found


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {name: path for name, path in modules.items() if name != "sweeper"}


def test_every_module_imports_only_its_floor_or_the_floors_below():
    upward = [
        f"{name} (floor {_floor(name)}) imports {target} (floor {_floor(target)})"
        for name, path in _modules().items()
        for target in _imports(path)
        if _floor(target) > _floor(name)
    ]
    assert not upward, upward


def test_only_the_entry_point_and_the_job_context_read_hydra_or_the_environment():
    readers = {
        path.relative_to(REPO_ROOT).as_posix()
        for path in PACKAGE.rglob("*.py")
        if re.search(r"HydraConfig|os\.environ", path.read_text())
    }
    assert readers <= SEAMS, readers - SEAMS


def test_every_subpackage_has_its_mirror_under_tests():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == {p.name for p in (REPO_ROOT / "tests").iterdir() if p.is_dir()} - {"e2e", "zoo_conf"}
