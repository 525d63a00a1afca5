"""A grid measured in two runtimes from the command line: both latencies on every run, the report's runtimes table."""

from __future__ import annotations

from conftest import argv

from sweeper.tracking.results import load_runs


def test_a_grid_in_torch_and_onnx_runtime_logs_both_latencies_and_reports_them_side_by_side(tmp_path, run_cli):
    line = "-m compression=none,quantize measure.runtimes=[torch,onnxruntime] strategy.epochs=2 hydra.sweep.dir=g"
    proc = run_cli(
        *argv(line),
        *argv("measure.latency_seconds=0.02 hydra.callbacks.report.latency_rounds=2"),
        report=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs("sweeper", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    assert runs["latency_ms"].notna().all() and runs["latency_ms_onnxruntime"].notna().all()
    assert set(runs["latency_measured"]) == {"latency round"}  # the trials left it to the round, which logged it
    assert set(runs["onnxruntime_model"]) == {"float32", "int8 static"}
    markdown = (tmp_path / "g" / "report" / "report.md").read_text()
    section = markdown.split("## Runtimes", 1)[1].split("\n## ", 1)[0]
    assert "| compression=quantize | int8 static |" in section and "x [" in section  # interleaved ratios
