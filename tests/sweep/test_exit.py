"""The end of a sweep: the process exits within seconds of its last line, with everything written.

After the last line, the interpreter's final garbage collections used to walk every object that
torch, MLflow, pandas and the sweep had made (about 0.7 million): 4-8 s of silence on an idle
2-core machine, more on a busy one. ``sweeper.__main__.main`` freezes the heap at exit, after every
other exit handler, so those collections skip it. Checked here by what the process does, not by a
clock: an exit handler registered before ``main`` runs after its freeze and writes how many objects
are frozen; the runs it wrote must all be FINISHED.
"""

from __future__ import annotations

import pytest
from conftest import TINY_TASK, sweeper_cli

from sweeper.tracking.results import load_runs

pytestmark = pytest.mark.integration

_PROBE = """\
import atexit, gc, pathlib, runpy
atexit.register(lambda: pathlib.Path("frozen.txt").write_text(str(gc.get_freeze_count())))  # runs after sweeper's
runpy.run_module("sweeper", run_name="__main__", alter_sys=True)
"""


def test_a_sweep_freezes_its_heap_at_exit_and_loses_nothing(tmp_path, _mlflow_template):
    (tmp_path / "exit_probe.py").write_text(_PROBE)
    proc = sweeper_cli(tmp_path, _mlflow_template, "-m", "optimizer=adam,sgd", *TINY_TASK, module="exit_probe")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int((tmp_path / "frozen.txt").read_text()) > 100_000  # torch and MLflow alone make ~300,000

    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = load_runs("sweeper", tracking_uri=uri)
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("sweeper").experiment_id], "tags.sweeper_role = 'sweep'"
    )
    assert parent.info.status == "FINISHED"
