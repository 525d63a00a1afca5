"""Every YAML of every config group: it opens with the command that uses it, and that command composes and plans."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import CHECKPOINT_CACHE, FAST, REPO_ROOT
from hydra import compose, initialize_config_module
from omegaconf import open_dict

from sweeper.trial.plan import plan_trial

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


def write_idx(root: Path, n: int = 60) -> Path:
    """Tiny MNIST-format files (IDX: magic, big-endian dims, uint8 data) in ``root``."""
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n), ("t10k", n // 3)):
        labels = np.arange(count, dtype=np.uint8) % 3
        images = (rng.integers(0, 60, (count, 28, 28)) + 60 * labels[:, None, None]).astype(np.uint8)
        for kind, array, magic in (("images-idx3", images, 3), ("labels-idx1", labels, 1)):
            header = bytes([0, 0, 8, magic]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
            (root / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())
    return root


def _overrides(path: Path, tmp_path: Path) -> list[str]:
    group = path.parent.relative_to(CONF).as_posix()
    if group == "compression/stages":  # a stage composes inside a pipeline
        return ["compression=pipeline", f"compression/stages=[{path.stem}]"]
    extra = ["compare.extra_epochs=5"] if group == "experiment" else []  # a grid's check sets it in a multirun
    if "experiment=llm" in _documented_command(path):  # the GGUF converted once for every test that loads it
        extra += [f"model.cache_dir={CHECKPOINT_CACHE}", f"data.cache_dir={CHECKPOINT_CACHE}"]
    if path.stem == "image_folder":  # the user's directory: IDX files made here
        extra.append(f"data.path={write_idx(tmp_path)}")
    return [*(a for a in _documented_command(path) if "<" not in a), *extra]


@pytest.mark.parametrize("path", OPTIONS, ids=lambda p: p.relative_to(CONF).as_posix())
def test_every_option_opens_with_its_command_which_composes_and_plans(path, tmp_path):
    _documented_command(path)
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        cfg = compose(
            "config", overrides=[*FAST, "tracking.enabled=false", *_overrides(path, tmp_path)], return_hydra_config=True
        )
        choices = dict(cfg.hydra.runtime.choices)
        group = path.parent.relative_to(CONF).as_posix()
        if group != "." and group != "compression/stages":
            assert choices[group] == path.stem  # the file's own command chooses it
        with open_dict(cfg):
            del cfg["hydra"]
        plan = plan_trial(cfg, choices=choices)  # every component built and checked, nothing trained
    assert plan.unsupported is None
