"""Reusable pytest suites for plug-ins: the tests every compression method passes (subclass it for yours).

A method (built in, or a user's ``compression/<name>.yaml`` with its ``_target_``) is checked on the
artifact a user would deploy: the trial is run once per class (trained, compressed, written, reloaded,
measured, with tracking off), and every test reads it::

    # tests/test_my_method.py (pytest; the method's YAML in ./conf/compression/lowrank.yaml)
    from sweeper.testing import CompressionContract

    class TestMyLowRank(CompressionContract):
        overrides = ("compression=lowrank", "compression.rank=4")
        config_dir = "conf"          # where the option's YAML lives (None: the package's own options)
        family = "low-rank"          # what the method declares
        min_ratio = 1.5              # the artifact is at least this many times smaller than the fp32 one

The promises: the method declares its facts; the reloaded artifact computes what the in-memory result
computes; the artifact is smaller by ``min_ratio`` (or, ``dense=True``, exactly the dense fp32 network);
the latency kind says whether the kernels that run execute the saving; the run's metrics are complete.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from sweeper.artifact import dense_payload, serialized_size
from sweeper.compression import FAMILIES, MethodFacts
from sweeper.trial.context import JobContext
from sweeper.trial.run import run

__all__ = ["CompressionContract", "compose", "run_trial"]

# a few epochs and a short timing: the suite checks the contract, not the method's accuracy
QUICK = ("strategy.epochs=1", "measure.latency_seconds=0.01", "measure.latency_batch=32", "tracking.enabled=false")


def compose(*overrides: str, config_dir: str | Path | None = None) -> Any:
    """The package's config (plus ``config_dir``'s options) with ``overrides``, as the command line composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import open_dict

    search = [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]"] if config_dir is not None else []
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        cfg = hydra_compose("config", overrides=[*search, *overrides], return_hydra_config=True)
        choices = {str(k): str(v) for k, v in cfg.hydra.runtime.choices.items() if v is not None}
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg, choices


@functools.cache
def _base_cache() -> Path:
    """The trained base networks the suite's trials share in this process (each method starts from its base)."""
    return Path(tempfile.mkdtemp(prefix="sweeper-contract-bases-"))


def run_trial(*overrides: str, out: Path, config_dir: str | Path | None = None) -> Any:
    """A trial of ``overrides`` run in ``out`` (tracking off): its :class:`~sweeper.trial.run.TrialResult`."""
    cfg, choices = compose(*QUICK, f"base.cache_dir={_base_cache()}", *overrides, config_dir=config_dir)
    return run(cfg, JobContext.standalone(out, choices=choices))


class CompressionContract:
    """What every compression method promises; a subclass names its method by ``overrides``."""

    overrides: ClassVar[tuple[str, ...]] = ()
    config_dir: ClassVar[str | None] = None  # a user's config dir holding the option's YAML
    family: ClassVar[str | None] = None  # the family the method declares (None: one of the built-in families)
    min_ratio: ClassVar[float] = 1.0  # the artifact is at least this many times smaller than the fp32 dense one
    dense: ClassVar[bool] = False  # the method keeps the fp32 dense network: its artifact is exactly that one
    latency_kind: ClassVar[str] = "real"

    @pytest.fixture(scope="class")
    def trial(self, tmp_path_factory: pytest.TempPathFactory) -> Any:
        """Trained, compressed, written and reloaded once per method; every test of the class reads it."""
        out = tmp_path_factory.mktemp("trial")
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(out)  # a cache (a teacher, a trained base), if any, lands here
            return run_trial(*self.overrides, out=out, config_dir=self.config_dir)

    def test_the_method_declares_its_facts(self, trial: Any) -> None:
        facts = getattr(trial.plan.compressor, "facts", None)
        assert isinstance(facts, MethodFacts), "declare facts: ClassVar[MethodFacts] = MethodFacts(family, training)"
        assert facts.family == self.family if self.family is not None else facts.family in FAMILIES

    def test_reloaded_outputs_match_the_in_memory_model(self, trial: Any) -> None:
        x = trial.plan.task.inputs("test")[:64]
        with torch.no_grad():
            expected = trial.deployed.compressed.module(x)
            got = trial.deployed.module(x)
        task = trial.plan.task
        assert got.shape == ((len(x), *task.input_shape) if task.sequence else (len(x),)) + (task.num_classes,)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    def test_artifact_is_smaller_by_the_expected_factor(self, trial: Any) -> None:
        size = int(trial.metrics["size_bytes"])
        if self.dense:  # no saving to claim: byte for byte the reloaded network written as a dense fp32 artifact
            rewritten = serialized_size("dense", trial.plan.spec, dense_payload(trial.deployed.module))
            assert size == rewritten and trial.deployed.path.stat().st_size == rewritten
            assert trial.metrics["compression_ratio"] == pytest.approx(1.0)
        else:
            assert trial.metrics["compression_ratio"] >= self.min_ratio > 1.0

    def test_latency_kind_says_whether_kernels_execute_the_saving(self, trial: Any) -> None:
        assert trial.deployed.compressed.latency_kind == self.latency_kind

    def test_the_run_has_every_final_metric(self, trial: Any) -> None:
        import math

        from sweeper.metrics import FINAL_METRICS

        missing = [m for m in FINAL_METRICS if not math.isfinite(trial.metrics.get(m, math.nan))]
        assert not missing, missing
