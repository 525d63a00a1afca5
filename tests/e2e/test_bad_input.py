"""Bad input fails before any training with one line naming the key and what is allowed."""

from __future__ import annotations

import signal
import sys

import pytest

from sweeper.__main__ import main

BAD_INPUTS = [
    (["optimizer=adm"], "optimizer=adm: unknown option; allowed: adagrad, adam, adamw, gd"),
    (["strategy=cosin"], "strategy=cosin: unknown option; allowed: batch_growth, cosine"),
    (["optimizer.lr=-1"], "optimizer.lr=-1: must be a number > 0"),
    (["optimizer.lr=0"], "optimizer.lr=0: must be a number > 0"),
    (["strategy.epochs=-1"], "strategy.epochs=-1: must be an integer >= 0"),
    (["strategy.batch_size=0"], "strategy.batch_size=0: must be an integer >= 1 or 'full'"),
    (["strategy.batch_size=-8"], "strategy.batch_size=-8: must be an integer >= 1 or 'full'"),
    (["strategy.epoch=3"], "strategy.epoch: unknown key; allowed: accumulate_steps, batch_growth, batch_size, clip"),
    (["optimizer.momentum=0.9"], "optimizer.momentum: unknown key; allowed: _partial_, _target_, betas, lr"),
    (["strategy.lr_schedule.name=linear"], "strategy.lr_schedule.name='linear': must be one of constant, step"),
    (["strategy.early_stopping.patience=0"], "strategy.early_stopping.patience=0: must be >= 1"),
    (["optimizer=gd", "strategy.batch_size=32"], "strategy.batch_size=32: optimizer=gd needs 'full'"),
    (["strategy.precision=fp8"], "strategy.precision='fp8': must be one of 32, bf16, fp16"),
    (["strategy.accumulate_steps=0"], "strategy.accumulate_steps=0: must be an integer >= 1"),
    (["strategy.clip_grad_norm=0"], "strategy.clip_grad_norm=0: must be > 0, or null (no clipping)"),
    (["nproc=64"], "nproc=64: must be an integer in [1, "),
    (["device=tpu"], "device='tpu': unknown device; allowed: auto, cpu, cuda, cuda:N"),
    (["seed=abc"], "seed='abc': must be an integer >= 0"),
    (["data=synthetic", "data.noise=1.5"], "data.noise=1.5: must be in [0, 1)"),
    (["model.channels=[0]"], "model.channels=[0]: every width must be >= 1"),
    (["data._target_=nowhere.make_task"], "data._target_=nowhere.make_task: Error loading 'nowhere.make_task'"),
    (["experiment=text", "model.checkpoint=/no/such/dir"], "data.tokenizer=/no/such/dir: no such directory"),
    (["model.checkpoint=/no/such/file.pt"], "model.checkpoint=/no/such/file.pt: no such file or directory"),
    (["experiment=bio", "data.max_length=4"], "data.max_length=4: must be an integer >= 8"),
    (["data=image_folder", "data.path=/no/such/dir"], "data.path=/no/such/dir: not a directory"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_input_exits_2_with_one_line_naming_the_key(overrides, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # main() sets these and a SIGTERM handler for its process: give them back to the tests after this one
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.setenv("SWEEPER_SHOW_TRACEBACK", "0")
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)
    monkeypatch.setattr(sys, "argv", ["sweeper", *overrides, "tracking.enabled=false"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("sweeper: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "mlflow.db").exists()  # nothing ran, nothing was tracked


def test_an_unwritable_tracking_store_is_one_line_before_training(run_cli):
    proc = run_cli("tracking.uri=sqlite:////proc/nope/mlflow.db", "strategy.epochs=50")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "sweeper: error: tracking.uri=sqlite:////proc/nope/mlflow.db: cannot write the MLflow store there "
        "(/proc is not writable)"
    )
    assert "trial" not in proc.stdout
