"""The artifact file: reloaded from the file and the model's `_target_` alone, in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, cli_env, compose_config

from sweeper.artifact import ModelSpec, load_artifact, save_artifact
from sweeper.plan import plan_trial
from sweeper.run import Trained, deploy_stage
from sweeper.training import TrainResult

_RELOAD = """
import json, sys, torch
from sweeper.artifact import load_artifact
model = load_artifact(sys.argv[1])
x, expected = torch.load(sys.argv[2])
with torch.no_grad():
    close = torch.allclose(model(x), expected, atol=1e-4, rtol=1e-4)
print(json.dumps({"close": close, "modules": sorted(m for m in sys.modules if m.startswith("sweeper."))}))
"""


@pytest.mark.parametrize(
    ("model", "overrides", "loader"),
    [
        (
            "tiny_transformer",
            ["compression=quantize", "compression.calibration_samples=64"],
            "sweeper.compression._quantize",
        ),
        (
            "tiny_resnet",
            [
                "compression=pipeline",
                "compression/stages=[prune_structured,qat]",
                "compression.stages.prune_structured.finetune_epochs=0",
                "compression.stages.qat.finetune_epochs=0",
            ],
            "sweeper.compression._qat",
        ),
        (
            "tiny_transformer",
            ["compression=prune_structured", "compression.finetune_epochs=0"],
            "sweeper.compression._structured",
        ),
    ],
)
def test_a_fresh_process_reloads_the_artifact_importing_only_its_loader(tmp_path, model, overrides, loader):
    cfg = compose_config(f"model={model}", *overrides, zoo=True)
    plan = plan_trial(cfg)  # untrained weights: reloading does not depend on training
    deployed = deploy_stage(plan, Trained(TrainResult()), tmp_path / "model.pt")
    x = plan.task.x_test[:16]
    with torch.no_grad():
        torch.save((x, deployed.compressed.module(x)), tmp_path / "expected.pt")

    env = cli_env(PYTHONPATH=f"{REPO_ROOT}:{REPO_ROOT / 'tests'}")
    proc = subprocess.run(
        [sys.executable, "-c", _RELOAD, str(tmp_path / "model.pt"), str(tmp_path / "expected.pt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["close"]
    methods = {m for m in result["modules"] if m.startswith("sweeper.compression._")} - {
        "sweeper.compression._base",
        "sweeper.compression._storage",
        "sweeper.compression._attention",
        "sweeper.compression._targets",
    }  # the shared helpers, not methods
    assert methods == {loader}, methods  # no other method's module was imported to read the file


def test_a_file_of_an_unknown_kind_or_format_fails_naming_it(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(
        {"format": "sweeper-artifact/1", "kind": "mystery", "loader": None, "model": {"target": "x"}, "payload": {}},
        path,
    )
    with pytest.raises(ValueError, match="unknown artifact kind 'mystery'; known: dense"):
        load_artifact(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(ValueError, match="is not a sweeper-artifact/1 file"):
        load_artifact(path)
    with pytest.raises(FileNotFoundError, match="artifact not found"):
        load_artifact(tmp_path / "missing.pt")


def test_a_spec_with_recorded_sizes_builds_the_smaller_network():
    spec = ModelSpec(
        "sweeper.models.make_mlp",
        {"input_shape": [4], "num_classes": 3, "hidden": [8]},
        resized={"1": {"out_features": 5}, "3": {"in_features": 5}},
        shapes={"1.weight": [5, 4], "1.bias": [5], "3.weight": [3, 5]},
    )
    model = spec.build()
    assert (model[1].out_features, model[3].in_features) == (5, 5)
    assert model(torch.zeros(2, 4)).shape == (2, 3)
    assert isinstance(model[1].weight, torch.nn.Parameter)


def test_save_refuses_a_kind_without_a_loader(tmp_path):
    with pytest.raises(ValueError, match="artifact kind 'mystery' has no loader"):
        save_artifact(tmp_path / "m.pt", "mystery", ModelSpec("sweeper.models.make_mlp"), {})


def test_a_network_already_timed_in_this_process_is_not_timed_again(make_cfg, tmp_path, monkeypatch):
    import sweeper.measure

    calls = []
    real = sweeper.measure.measure_latency
    monkeypatch.setattr(sweeper.measure, "_timed", {})
    monkeypatch.setattr(sweeper.measure, "measure_latency", lambda *a, **k: calls.append(1) or real(*a, **k))
    tags = []
    for optimizer, path in (("adam", "a.pt"), ("sgd", "b.pt"), ("adam", "c.pt")):
        plan = plan_trial(make_cfg(f"optimizer={optimizer}", "model=mlp", "compression=none"))
        deployed = deploy_stage(plan, Trained(TrainResult()), tmp_path / path)
        tags.append(deployed.tags["latency_measured"])
    assert tags == ["estimate", "reused estimate", "reused estimate"] and len(calls) == 2  # batch 1, larger batch
    plan = plan_trial(make_cfg("model=mlp", "model.hidden=[32]", "compression=none"))  # another network
    assert deploy_stage(plan, Trained(TrainResult()), tmp_path / "d.pt").tags["latency_measured"] == "estimate"
    assert len(calls) == 4


@pytest.mark.parametrize(
    ("mode", "search_reads_latency", "round_follows", "timed"),
    [
        ("auto", False, True, False),  # a grid or a search on accuracy/size: the report's round times it
        ("auto", True, True, True),  # a latency objective or constraint reads it during the search
        ("auto", False, False, True),  # a single run, or a sweep without the round
        ("always", False, True, True),
    ],
)
def test_a_trial_times_its_latency_only_when_something_reads_it_before_the_round(
    mode, search_reads_latency, round_follows, timed
):
    from sweeper.measure import trial_times_latency

    assert trial_times_latency(mode, search_reads_latency=search_reads_latency, round_follows=round_follows) is timed


def test_an_untimed_trial_has_nan_latency_and_says_so(make_cfg, tmp_path, monkeypatch):
    import sweeper.measure
    import sweeper.run

    calls = []
    monkeypatch.setattr(sweeper.measure, "measure_latency", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(sweeper.run, "_latency_round_follows", lambda cfg: True)
    deployed = deploy_stage(
        plan_trial(make_cfg("model=mlp", "compression=none")), Trained(TrainResult()), tmp_path / "m.pt"
    )
    assert deployed.tags["latency_measured"] == "not timed" and not calls
    assert all(deployed.metrics[m] != deployed.metrics[m] for m in ("latency_ms", "latency_ms_batch"))  # NaN
    assert "latency_ms" not in sweeper.run._measured(deployed.metrics)  # not logged to MLflow: the round logs it
    assert deployed.metrics["test_score"] > 0 and deployed.metrics["size_bytes"] > 0


def test_an_unknown_trial_latency_mode_is_refused_by_name(make_cfg):
    from sweeper.errors import ConfigError

    with pytest.raises(ConfigError, match=r"measure.trial_latency='sometimes': allowed: auto, always"):
        plan_trial(make_cfg("measure.trial_latency=sometimes"))


@pytest.mark.parametrize(
    ("report", "tracking", "follows"),
    [
        ({"enabled": True, "latency_rounds": 5}, True, True),
        ({"enabled": True, "latency_rounds": 5}, False, False),  # no MLflow runs: the report is skipped
        ({"enabled": False, "latency_rounds": 5}, True, False),
        ({"enabled": True, "latency_rounds": 0}, True, False),
        ({"enabled": True, "latency_rounds": None}, True, False),
        (None, True, False),
    ],
)
def test_a_round_follows_a_multirun_job_only_when_its_report_will_time_it(
    make_cfg, monkeypatch, report, tracking, follows
):
    from omegaconf import OmegaConf

    import sweeper.run

    hydra = OmegaConf.create({"callbacks": {"report": report} if report else {}})
    monkeypatch.setattr(sweeper.run, "hydra_config", lambda: hydra)
    monkeypatch.setattr(sweeper.run, "_is_multirun", lambda: True)
    assert sweeper.run._latency_round_follows(make_cfg(f"tracking.enabled={str(tracking).lower()}")) is follows
