"""Every YAML of every config group: it opens with the command that uses it, and that command composes and plans."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from conftest import FAST, REPO_ROOT
from hydra import compose, initialize_config_module
from omegaconf import open_dict

from sweeper.plan import plan_trial

CONF = REPO_ROOT / "conf"
OPTIONS = sorted(p for p in CONF.rglob("*.yaml") if p.parent.name != "local")


def _documented_command(path: Path) -> list[str]:
    """The overrides of the ``# python -m sweeper ...`` line that opens the file (its comment block)."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# python -m sweeper"):
            command = line.removeprefix("# python -m sweeper").split("   (", 1)[0]
            return [a for a in shlex.split(command) if "=" in a]  # the overrides; not -m, not a trailing remark
    raise AssertionError(f"{path.relative_to(REPO_ROOT)}: no '# python -m sweeper ...' line in its opening comments")


def _overrides(path: Path) -> list[str]:
    group = path.parent.relative_to(CONF).as_posix()
    if group == "compression/stages":  # a stage composes inside a pipeline
        return ["compression=pipeline", f"compression/stages=[{path.stem}]"]
    extra = ["compare.extra_epochs=5"] if group == "experiment" else []  # a grid's check sets it in a multirun
    return [*(a for a in _documented_command(path) if "<" not in a), *extra]


@pytest.mark.parametrize("path", OPTIONS, ids=lambda p: p.relative_to(CONF).as_posix())
def test_every_option_opens_with_its_command_which_composes_and_plans(path):
    _documented_command(path)
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        cfg = compose(
            "config", overrides=[*FAST, "tracking.enabled=false", *_overrides(path)], return_hydra_config=True
        )
        choices = dict(cfg.hydra.runtime.choices)
        group = path.parent.relative_to(CONF).as_posix()
        if group != "." and group != "compression/stages":
            assert choices[group] == path.stem  # the file's own command chooses it
        with open_dict(cfg):
            del cfg["hydra"]
        plan = plan_trial(cfg, choices=choices)  # every component built and checked, nothing trained
    assert plan.unsupported is None
