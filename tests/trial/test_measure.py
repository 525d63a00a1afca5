"""Measuring a deployed artifact: when a trial times its latency, and once per network per process."""

from __future__ import annotations

import pytest
import torch

from sweeper.training import TrainResult
from sweeper.trial.plan import plan_trial
from sweeper.trial.run import Trained, deploy_stage


def test_a_network_already_timed_in_this_process_is_not_timed_again(make_cfg, tmp_path, monkeypatch):
    import sweeper.trial.measure

    calls = []
    real = sweeper.trial.measure.measure_latency
    monkeypatch.setattr(sweeper.trial.measure, "_timed", {})
    monkeypatch.setattr(sweeper.trial.measure, "measure_latency", lambda *a, **k: calls.append(1) or real(*a, **k))
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
        ("never", True, False, False),  # the report's round, or python -m sweeper.report, times it
    ],
)
def test_a_trial_times_its_latency_only_when_something_reads_it_before_the_round(
    mode, search_reads_latency, round_follows, timed
):
    from sweeper.trial.measure import trial_times_latency

    assert trial_times_latency(mode, search_reads_latency=search_reads_latency, round_follows=round_follows) is timed


def test_an_untimed_trial_has_nan_latency_and_says_so(make_cfg, tmp_path, monkeypatch):
    import sweeper.trial.measure
    import sweeper.trial.run

    calls = []
    monkeypatch.setattr(sweeper.trial.measure, "measure_latency", lambda *a, **k: calls.append(1))
    deployed = deploy_stage(
        plan_trial(make_cfg("model=mlp", "compression=none")),
        Trained(TrainResult()),
        tmp_path / "m.pt",
        time_latency=False,
    )
    assert deployed.tags["latency_measured"] == "not timed" and not calls
    assert all(deployed.metrics[m] != deployed.metrics[m] for m in ("latency_ms", "latency_ms_batch"))  # NaN
    assert "latency_ms" not in sweeper.trial.run._measured(deployed.metrics)  # not logged to MLflow: the round logs it
    assert deployed.metrics["test_score"] > 0 and deployed.metrics["size_bytes"] > 0


def test_an_unknown_trial_latency_mode_is_refused_by_name(make_cfg):
    from sweeper.errors import ConfigError

    with pytest.raises(ConfigError, match=r"measure.trial_latency='sometimes': allowed: auto, always, never"):
        plan_trial(make_cfg("measure.trial_latency=sometimes"))


@pytest.mark.parametrize(
    ("report", "follows"),
    [
        ({"enabled": True, "latency_rounds": 5}, True),
        ({"enabled": False, "latency_rounds": 5}, False),
        ({"enabled": True, "latency_rounds": 0}, False),
        ({"enabled": True, "latency_rounds": None}, False),
        (None, False),
    ],
)
def test_a_round_follows_a_multirun_job_only_when_its_report_will_time_it(report, follows):
    from omegaconf import OmegaConf

    from sweeper.trial.context import _report_times

    assert _report_times(OmegaConf.create({"callbacks": {"report": report} if report else {}})) is follows


def test_a_language_model_is_timed_as_it_generates_with_its_kv_cache(make_cfg, tmp_path, monkeypatch):
    import sweeper.trial.measure

    monkeypatch.setattr(sweeper.trial.measure, "_timed", {})
    lm = ["data=lm_text", "model=tiny_llama", "data.length=32", "data.vocab_size=500", "data.eval_windows=4"]
    plan = plan_trial(make_cfg(*lm, "compression=rtn", "compression.bits=4"))
    deployed = deploy_stage(plan, Trained(TrainResult()), tmp_path / "lm.pt")
    assert deployed.metrics["prefill_tokens_per_s"] > 0 and deployed.metrics["decode_ms_per_token"] > 0
    model, prompt = deployed.module, plan.task.inputs("test")[:1]  # the reloaded low-bit artifact generates
    with torch.inference_mode():
        _, cache = model.step(prompt[:, :-1])
        stepped, _ = model.step(prompt[:, -1:], cache)  # the last token from the cache of the others
        whole = model(prompt)
    assert torch.allclose(stepped[:, -1], whole[:, -1], atol=1e-4)  # the cache changes the cost, not the answer
    plan = plan_trial(make_cfg("model=mlp", "compression=none"))
    assert "decode_ms_per_token" not in deploy_stage(plan, Trained(TrainResult()), tmp_path / "mlp.pt").metrics


@pytest.mark.parametrize("method", ["none", "sparsegpt"])
def test_a_released_network_is_measured_as_its_artifact_with_the_same_numbers(make_cfg, tmp_path, method):
    lm = ["data=lm_text", "model=tiny_llama", "data.length=32", "data.vocab_size=500", "data.eval_windows=4"]
    found = {}
    for release in (False, True):
        cfg = make_cfg(*lm, f"compression={method}", f"measure.release_network={release}")
        plan = plan_trial(cfg)
        deployed = deploy_stage(plan, Trained(TrainResult()), tmp_path / f"{release}.pt", time_latency=False)
        found[release] = deployed.metrics
        weights = [p.is_meta for p in plan.model.parameters()]
        assert all(weights) if release else not any(weights)  # given up once the artifact is written, or kept
        assert (deployed.compressed.module is deployed.module) == release
        assert (deployed.compressed.payload == {}) == release
        assert not any(p.is_meta for p in deployed.module.parameters())
    for key in ("test_score", "val_score", "size_bytes", "compression_ratio", "nonzero_params"):
        assert found[True][key] == found[False][key], key
