"""The artifact file: reloaded from the file and the model's `_target_` alone, in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, cli_env, compose_config

from sweeper.artifact import ModelSpec, load_artifact, save_artifact
from sweeper.training import TrainResult
from sweeper.trial.plan import plan_trial
from sweeper.trial.run import Trained, deploy_stage

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


def test_a_dense_payload_without_a_copy_shares_the_weights_and_writes_the_same_bytes(tmp_path):
    from sweeper.artifact import dense_payload

    spec = ModelSpec("sweeper.models.make_mlp", {"input_shape": [8], "num_classes": 3})
    model = spec.build()
    copied, shared = dense_payload(model), dense_payload(model, copy=False)
    weights = {k: v.data_ptr() for k, v in model.state_dict().items()}
    assert all(shared["state_dict"][k].data_ptr() == ptr for k, ptr in weights.items())
    assert all(copied["state_dict"][k].data_ptr() != ptr for k, ptr in weights.items())
    sizes = [save_artifact(tmp_path / f"{i}.pt", "dense", spec, p) for i, p in enumerate((copied, shared))]
    assert sizes[0] == sizes[1]
    reloaded = load_artifact(tmp_path / "1.pt")
    x = torch.randn(4, 8)
    torch.testing.assert_close(reloaded(x), model.eval()(x))


def test_a_reloaded_artifact_holds_the_loaded_tensors_themselves():
    from sweeper.artifact import load_state

    spec = ModelSpec("sweeper.models.make_mlp", {"input_shape": [8], "num_classes": 3})
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in spec.build().state_dict().items()}
    model = load_state(spec.build(), state)
    assert all(v.data_ptr() == state[k].data_ptr() for k, v in model.state_dict().items())  # no second copy
    assert all(p.requires_grad for p in model.parameters())
    double = {k: v.double() for k, v in state.items()}  # another dtype: copied into the model's own tensors
    model = load_state(spec.build(), double)
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())


def test_tied_weights_stay_one_parameter_through_the_artifact(tmp_path):
    from sweeper.artifact import dense_payload

    spec = ModelSpec("sweeper.hf.make_causal_lm", {"input_shape": [16], "num_classes": 200})  # ties its embeddings
    model = spec.build()
    save_artifact(tmp_path / "lm.pt", "dense", spec, dense_payload(model))
    reloaded = load_artifact(tmp_path / "lm.pt")
    assert reloaded.model.lm_head.weight is reloaded.model.model.embed_tokens.weight
    assert sum(p.numel() for p in reloaded.parameters()) == sum(p.numel() for p in model.parameters())
