"""A user's own compression method, one Python file and one YAML in their config dir, beside `none` in a grid."""

from __future__ import annotations

import os

import pytest
from conftest import REPO_ROOT, ZOO_CONF, argv

from sweeper.tracking.results import load_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_users_method_runs_in_a_grid_and_the_report_files_it_under_its_own_family(run_cli, tmp_path):
    proc = run_cli(
        "--config-dir",
        str(ZOO_CONF),
        *argv("-m compression=none,weight_sharing model=mlp strategy.epochs=2 measure.latency_seconds=0.01"),
        report=True,
        env={"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs(sweep_id="latest", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").set_index("compression")
    assert (runs["status"] == "FINISHED").all()
    assert runs.loc["weight_sharing", "family"] == "weight sharing" and runs.loc["none", "family"] == "baseline"
    assert runs.loc["weight_sharing", "size_bytes"] < 0.4 * runs.loc["none", "size_bytes"]
    (report,) = tmp_path.glob("multirun/*/*/report/report.md")
    family_rows = [line for line in report.read_text().splitlines() if line.startswith("| weight sharing |")]
    assert family_rows and "compression=weight_sharing" in family_rows[0]  # its family, its best configuration
