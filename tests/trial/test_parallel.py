"""One trial across processes: data-parallel training (torch.distributed's launcher, gloo on CPU)."""

from __future__ import annotations

import pytest
from conftest import TINY_TASK, compose_config
from mlflow import MlflowClient

from sweeper.errors import ConfigError
from sweeper.trial.context import JobContext
from sweeper.trial.parallel import DataParallelFailed
from sweeper.trial.plan import plan_trial
from sweeper.trial.run import run

STEPS = [*TINY_TASK, "strategy.epochs=3", "strategy.batch_size=32"]


def test_two_processes_train_what_one_trains_and_the_trial_logs_once(tmp_path, tracking_uri):
    one = run(compose_config(*STEPS, f"base.cache_dir={tmp_path / 'one'}"), JobContext.standalone(tmp_path / "a"))
    cfg = compose_config(
        *STEPS, "nproc=2", f"base.cache_dir={tmp_path / 'two'}", f"tracking.uri={tracking_uri}", tracking=True
    )
    two = run(cfg, JobContext.standalone(tmp_path / "b"))
    assert two.trained is not None and one.trained is not None
    # each process takes half of every step's batch; the averaged gradient is the whole batch's
    assert two.trained.result.steps == one.trained.result.steps == 3 * 7  # 210 training rows in batches of 32
    two_losses = [row["train_loss"] for row in two.trained.result.history]
    assert two_losses == pytest.approx([row["train_loss"] for row in one.trained.result.history], rel=1e-4)
    assert two.metrics["test_accuracy"] == pytest.approx(one.metrics["test_accuracy"], abs=0.02)
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [two.run_id]  # one run: the workers log nothing
    assert runs[0].data.params["nproc"] == "2"
    assert len(runs[0].data.metrics) > 5 and client.get_metric_history(two.run_id, "train_loss")[-1].step == 2
    artifacts = [f.path for f in client.list_artifacts(two.run_id)]
    assert artifacts.count("model.pt") == 1 and sorted(p.name for p in (tmp_path / "b").glob("*.pt")) == ["model.pt"]


def test_a_failing_rank_fails_the_trial_with_its_error(tmp_path):
    cfg = compose_config(
        *STEPS, "nproc=2", "data._target_=zoo.synthetic_failing_on_rank", "+data.rank=1", f"base.cache_dir={tmp_path}"
    )
    with pytest.raises(DataParallelFailed, match=r"^data-parallel rank 1 failed: .*worker 1 cannot read its shard"):
        run(cfg, JobContext.standalone(tmp_path / "run"))
    assert not list(tmp_path.glob("*.pt"))  # no base published


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["nproc=0"], r"^nproc=0: must be an integer in \[1, \d+\]"),
        (["nproc=4096"], r"^nproc=4096: must be an integer in \[1, \d+\] \(\d+ CPU cores here\)"),
        (["nproc=2", "compression=prune_gradual"], r"^nproc=2: compression=\S+ changes the training itself"),
    ],
)
def test_bad_process_counts_are_one_line_errors_before_training(overrides, message):
    with pytest.raises(ConfigError, match=message):
        plan_trial(compose_config(*TINY_TASK, *overrides))
