"""measure.runtimes: the artifact exported to ONNX and measured in ONNX Runtime, and the report's runtimes table."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import compose_config
from torch import nn
from trials import Trial

from sweeper.errors import ConfigError
from sweeper.trial.runtimes import OnnxModule, check_runtimes, measure_onnx

ONNX = ["measure.runtimes=[torch,onnxruntime]", "strategy.epochs=4"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The default CNN, dense and torch-int8, each measured in both runtimes (one trial each)."""
    root = tmp_path_factory.mktemp("onnx")
    return {
        method: Trial(compose_config(f"compression={method}", *ONNX), root / method / "model.pt")
        for method in ("none", "quantize")
    }


@pytest.mark.parametrize("method", ["none", "quantize"])
def test_the_onnx_export_reloads_with_the_torch_artifacts_accuracy(exported, method):
    trial = exported[method]
    metrics = trial.metrics
    # the dense export computes the same function; int8 is ONNX Runtime's own quantizer (static QDQ per channel),
    # not torch's: a few of the 360 test digits may fall the other way
    assert abs(metrics["test_score_onnxruntime"] - metrics["test_score"]) <= (0.005 if method == "none" else 0.01)
    assert metrics["latency_ms_onnxruntime"] > 0 and metrics["latency_ms_batch_onnxruntime"] > 0
    onnx_file = trial.path.with_name("model.onnx")
    assert metrics["size_bytes_onnxruntime"] == onnx_file.stat().st_size
    session = OnnxModule(onnx_file)  # the file alone runs: the same scores on the test split
    assert session(trial.x).shape == (len(trial.x), trial.plan.task.num_classes)
    if method == "none":
        torch.testing.assert_close(session(trial.x), trial.reloaded(trial.x), rtol=1e-4, atol=1e-4)


def test_the_torch_int8_artifact_is_quantized_by_onnx_runtime_and_is_smaller(exported):
    import onnx

    dense, int8 = exported["none"].metrics, exported["quantize"].metrics
    assert int8["size_bytes_onnxruntime"] < 0.5 * dense["size_bytes_onnxruntime"]
    graph = onnx.load(str(exported["quantize"].path.with_name("model.onnx"))).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)  # static QDQ: the CNN has convolutions


def test_a_network_without_an_onnx_form_is_a_labelled_absence(exported, tmp_path):
    task = exported["none"].plan.task  # nn.Bilinear has no ONNX operator in the TorchScript exporter
    broken, reason = measure_onnx(
        nn.Bilinear(2, 2, 2), task, tmp_path / "b.onnx", int8_from=None, latency_seconds=0.01, latency_batch=8
    )
    assert broken == {} and reason["onnxruntime_unavailable"].startswith(("RuntimeError", "Error", "TypeError"))


@pytest.mark.parametrize(
    ("runtimes", "message"),
    [
        (["torch", "tensorrt"], "measure.runtimes=['torch', 'tensorrt']: allowed: torch, onnxruntime, torch first"),
        (["onnxruntime"], "measure.runtimes=['onnxruntime']: allowed: torch, onnxruntime, torch first"),
    ],
)
def test_unknown_runtimes_are_one_line_naming_the_allowed_ones(runtimes, message):
    with pytest.raises(ConfigError, match=r".*") as info:
        check_runtimes(runtimes)
    assert message in str(info.value)


def test_the_report_shows_each_runtime_and_a_labelled_absence(make_runs, tmp_path):
    from sweeper.report.build import write_report
    from sweeper.report.recommend import Budget

    rounds = {"latency_source": "interleaved"}
    runs = make_runs(
        dict(compression="none", seed=0, latency_ms_onnxruntime=0.03, test_score_onnxruntime=0.9,
             size_bytes_onnxruntime=50_000.0, onnxruntime_model="float32", latency_rounds=[0.1, 0.1, 0.11],
             latency_rounds_onnxruntime=[0.03, 0.03, 0.031], **rounds),
        dict(compression="quantize", seed=0, latency_ms_onnxruntime=0.05, test_score_onnxruntime=0.89,
             size_bytes_onnxruntime=20_000.0, onnxruntime_model="int8 static", latency_rounds=[0.2, 0.21, 0.2],
             latency_rounds_onnxruntime=[0.05, 0.05, 0.052], **rounds),
        dict(compression="distill", seed=0, onnxruntime_unavailable="RuntimeError: no ONNX form"),
    )  # fmt: skip
    import pandas as pd

    result = write_report(runs, pd.DataFrame(columns=["run_id", "metric", "epoch", "value"]), Budget(), tmp_path)
    markdown = (result.out_dir / "report.md").read_text()
    section = markdown.split("## Runtimes", 1)[1].split("\n## ", 1)[0]
    assert "| compression=quantize | int8 static |" in section
    assert re.search(
        r"\| 1\.6\dx \[[0-9.]+, [0-9.]+\] \|", section
    )  # int8 against float, both in ONNX Runtime, in the same rounds
    assert "cannot export: RuntimeError: no ONNX form" in section
