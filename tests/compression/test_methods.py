"""The `compression` group: bad input, storage formats, each method's artifact, and the multirun."""

from __future__ import annotations

import os
import re
from dataclasses import replace

import pytest
import torch
from conftest import REPO_ROOT, argv

from sweeper.compression import CompressionContext, facts_of
from sweeper.compression._prune import cubic_sparsity
from sweeper.compression._storage import decode_tensor, encode_tensor, pack_bits, pack_tree, unpack_bits, unpack_tree
from sweeper.compression._targets import prunable_weights
from sweeper.errors import ConfigError
from sweeper.testing import CompressionContract
from sweeper.tracking.results import FINAL_METRICS, load_runs
from sweeper.trial.measure import count_params
from sweeper.trial.plan import compression_options, plan_trial
from sweeper.trial.run import TrialResult, train_stage

SMALL = ["strategy.epochs=1"]


# --- bad input: one line naming the key, before any training -------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["compression=prune", "compression.amount=1.5"], "compression.amount=1.5: must be in [0, 1)"),
        (["compression=prune_random", "compression.amount=-0.1"], "compression.amount=-0.1"),
        (["compression=prune", "compression.scope=row"], "compression.scope='row': allowed: global, layer"),
        (["compression=prune_gradual", "compression.amount=1"], "compression.amount=1"),
        (["compression=qat", "compression.bits=9"], "compression.bits=9: allowed: integers 2..8"),
        (["compression=qat", "compression.bits=1"], "compression.bits=1"),
        (["compression=prune_structured", "compression.amount=0.95"], "would remove every channel of layer 0"),
        (["compression=distill", "+teacher.model.num_classes=5"], "teacher outputs 5 classes"),
        (["compression=pipeline", "compression/stages=[quantize,prune]"], "quantize must be the last stage"),
        (
            ["compression=pipeline", "compression/stages=[prune,distill]"],
            "distill acts during training and must come first",
        ),
        (
            ["compression=pipeline", "compression.stages.prune.amount=2"],
            "compression.stages.prune.amount=2: must be in [0, 1)",
        ),
        (["compression=pipeline", "+compression.stages.prune.foo=1"], "compression.stages.prune.foo: unknown key"),
        (["compression=prune", "compression.exclude=[nowhere]"], "pattern 'nowhere' matches no module"),
        (["compression=qat", "compression.include=head"], "compression.include='head': must be a list"),
        (["compression=gptq", "compression.bits=9"], "compression.bits=9: must be an integer in 2..8"),
        (["compression=wanda", "compression.amount=1.2"], "compression.amount=1.2: must be in [0, 1)"),
        (["compression=sparsegpt", "compression.pattern=2-4"], "compression.pattern='2-4': must be n:m"),
        (["compression=magnitude", "compression.pattern=5:4"], "compression.pattern"),
        (
            ["compression=rtn", "compression.group_size=7"],
            "compression.group_size=7: must divide the layer's in_features",
        ),
        (["compression=lowrank", "compression.rank=0"], "compression.rank=0: must be an integer >= 1"),
        (["compression=lowrank", "compression.energy=1.5"], "compression.energy=1.5: must be in (0, 1]"),
        (["compression=gptq", "compression.calibration_samples=100000"], "the training split holds"),
        (["compression=awq", "compression.exclude=[nowhere]"], "pattern 'nowhere' matches no module"),
    ],
)
def test_bad_input_fails_in_planning_with_the_key_and_allowed_values(make_cfg, monkeypatch, overrides, expected):
    monkeypatch.setattr("sweeper.compression._distill.train", _no_training)
    with pytest.raises(ConfigError) as info:
        plan_trial(make_cfg(*overrides))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def _no_training(*_args, **_kwargs):
    raise AssertionError("nothing may be trained here")


# --- storage formats -------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_bits_round_trips_and_takes_bits_per_value(bits):
    values = torch.randint(0, 2**bits, (101,), generator=torch.Generator().manual_seed(bits))
    packed = pack_bits(values, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-101 * bits // 8)
    assert torch.equal(unpack_bits(packed, bits, 101), values)


def test_sparse_encoding_is_exact_and_chosen_only_when_smaller():
    weight = torch.randn(40, 30)
    weight[torch.rand(40, 30, generator=torch.Generator().manual_seed(0)) < 0.9] = 0
    sparse = encode_tensor(weight)
    assert "mask" in sparse and torch.equal(decode_tensor(sparse), weight)
    assert "mask" not in encode_tensor(torch.randn(40, 30))
    codes = torch.randint(-7, 8, (16, 9))
    assert torch.equal(decode_tensor(encode_tensor(codes, bits=4)), codes)


def test_pack_tree_keeps_structure_and_tensors():
    tree = {"a": torch.arange(5, dtype=torch.float64), "b": [torch.ones(2, 3, dtype=torch.int8), 7, "x"], "c": None}
    back = unpack_tree(pack_tree(tree))
    assert torch.equal(back["a"], tree["a"]) and torch.equal(back["b"][0], tree["b"][0])
    assert back["b"][1:] == [7, "x"] and back["c"] is None


# --- gradual pruning schedule ----------------------------------------------------------------------


def test_cubic_schedule_formula():
    kwargs = {"initial": 0.1, "final": 0.9, "begin_step": 4, "frequency": 3, "num_updates": 5}
    assert cubic_sparsity(0, **kwargs) == 0.1
    for k in range(6):
        expected = 0.9 + (0.1 - 0.9) * (1 - k / 5) ** 3
        assert cubic_sparsity(4 + 3 * k, **kwargs) == pytest.approx(expected)
        assert cubic_sparsity(4 + 3 * k + 2, **kwargs) == pytest.approx(expected)  # held between updates
    assert cubic_sparsity(10_000, **kwargs) == pytest.approx(0.9)


def test_gradual_pruning_follows_the_cubic_sequence_during_training(make_cfg):
    cfg = make_cfg(
        "compression=prune_gradual",
        *SMALL,
        "compression.amount=0.9",
        "compression.frequency=3",
        "compression.initial_sparsity=0.2",
    )
    plan = plan_trial(cfg)
    train_stage(plan)
    method = plan.compressor
    plan_steps = -(-len(plan.task.x_train) // 64) * plan.strategy.epochs  # batch 64
    schedule = method.schedule(plan_steps)
    n, t0 = schedule["num_updates"], schedule["begin_step"]
    expected = [(t0 + 3 * k, 0.9 + (0.2 - 0.9) * (1 - k / n) ** 3) for k in range(n + 1)]
    assert [s for s, _ in method.history] == [s for s, _ in expected]
    assert [v for _, v in method.history] == pytest.approx([v for _, v in expected])
    assert method.history[-1][0] < plan_steps
    weights = prunable_weights(plan.model)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(0.9 * sum(w.numel() for w in weights.values()))


# --- each method on its reloaded artifact (the package's contract suite, one subclass per method) ---------


def _x(trial: TrialResult) -> torch.Tensor:
    return trial.plan.task.inputs("test")[:64]


def _dense_params(trial: TrialResult) -> int:
    """Weights of the network as the model config builds it, before any method changed it."""
    return count_params(trial.plan.spec.build())[0]


class TestNone(CompressionContract):
    overrides = ("compression=none",)
    dense = True


class TestPrune(CompressionContract):
    overrides = (
        "compression=prune",
        "compression.amount=0.8",
        "compression.scope=layer",
        "compression.finetune_epochs=1",
    )
    min_ratio = 2.5  # 20% of the values + a 1-bit mask
    latency_kind = "simulated"

    def test_reloaded_weights_are_zero_at_the_requested_sparsity_per_tensor(self, trial: TrialResult):
        reloaded = prunable_weights(trial.deployed.module)
        assert reloaded.keys() == prunable_weights(trial.deployed.compressed.module).keys()  # every pruned layer
        for name, weight in reloaded.items():
            zeros = int((weight == 0).sum())
            assert abs(zeros - 0.8 * weight.numel()) <= 1, name


class TestPruneRandom(TestPrune):
    overrides = (
        "compression=prune_random",
        "compression.amount=0.8",
        "compression.scope=layer",
        "compression.finetune_epochs=0",
    )


class TestPruneGlobal(CompressionContract):
    overrides = ("compression=prune", "compression.amount=0.9", "compression.finetune_epochs=1")
    min_ratio = 3.0
    latency_kind = "simulated"

    def test_global_sparsity_is_reached_over_all_layers(self, trial: TrialResult):
        weights = list(prunable_weights(trial.deployed.module).values())
        zeros = sum(int((w == 0).sum()) for w in weights)
        assert abs(zeros - 0.9 * sum(w.numel() for w in weights)) <= 1


class TestPruneGradual(CompressionContract):
    overrides = ("compression=prune_gradual", "compression.amount=0.8", "compression.frequency=2")
    min_ratio = 2.5
    latency_kind = "simulated"

    def test_the_schedule_reaches_its_sparsity_during_the_training_run(self, trial: TrialResult):
        assert facts_of(trial.plan.compressor).training == "in-training"
        assert trial.metrics["sparsity"] == pytest.approx(0.8, abs=1e-3)


class TestPruneStructured(CompressionContract):
    overrides = ("compression=prune_structured", "compression.amount=0.5", "compression.finetune_epochs=1")
    min_ratio = 2.5  # half the channels of every layer: about a quarter of the weights

    def test_channels_are_physically_removed(self, trial: TrialResult):
        params, _ = count_params(trial.deployed.module)
        assert params < 0.4 * _dense_params(trial)
        convs = [m for m in trial.deployed.module.modules() if isinstance(m, torch.nn.Conv2d)]
        assert [c.out_channels for c in convs] == [8, 16]  # from 16, 32
        assert trial.deployed.module(_x(trial)).shape == (64, 10)


class TestQuantize(CompressionContract):
    overrides = ("compression=quantize", "compression.calibration_samples=256")
    min_ratio = 3.2  # int8 weights; float biases and scales and the file's fixed overhead take the rest

    def test_int8_kernels_run(self, trial: TrialResult):
        modules = {type(m).__module__ for m in trial.deployed.module.modules()}
        assert any(m.startswith("torch.ao.nn.intrinsic.quantized.") for m in modules), modules  # int8 conv+relu
        assert any(m.startswith("torch.ao.nn.quantized.dynamic.") for m in modules), modules  # int8 linear


class TestQat(CompressionContract):
    overrides = ("compression=qat", "compression.bits=3", "compression.finetune_epochs=1")
    min_ratio = 6.0  # 3-bit codes: 10.7x for the weights, less the per-channel scales, biases and overhead
    latency_kind = "simulated"

    def test_at_most_two_to_the_bits_levels_per_channel(self, trial: TrialResult):
        for name, weight in prunable_weights(trial.deployed.module).items():
            for channel in weight.flatten(1):
                assert channel.unique().numel() <= 2**3, name


class TestMixed(CompressionContract):
    overrides = ("compression=mixed", "compression.budget_kb=12", "compression.finetune_epochs=1")
    min_ratio = 3.0  # the default CNN's fp32 artifact is about 4x the 12 KiB budget
    latency_kind = "simulated"

    def test_the_artifact_fits_the_budget_and_each_layer_got_its_setting(self, trial: TrialResult):
        assert trial.metrics["size_bytes"] <= 12 * 1024
        chosen = trial.deployed.compressed.params
        assert chosen and all(int(v) in (2, 3, 4, 8, 32) for k, v in chosen.items() if k.endswith(".bits"))
        assert {"sensitivity", "allocation"} <= set(trial.deployed.compressed.tables)


class TestDistill(CompressionContract):
    overrides = ("compression=distill", "compression.teacher_epochs=1")
    dense = True  # the student is the trial's own network

    def test_student_is_the_trial_model_and_teacher_is_wider(self, trial: TrialResult):
        assert count_params(trial.deployed.module)[0] == _dense_params(trial)
        assert trial.metrics["teacher_params"] > 2 * _dense_params(trial)
        assert trial.metrics["teacher_cached"] == 0.0


class TestPipeline(CompressionContract):
    overrides = (
        "compression=pipeline",
        "compression.stages.distill.teacher_epochs=1",
        "compression.stages.prune.amount=0.9",
        "compression.stages.prune.finetune_epochs=1",
    )
    min_ratio = 8.0  # 10% of the int8 codes + a 1-bit mask
    latency_kind = "simulated"  # int8 kernels run, the sparsity is not executed

    def test_zeros_of_pruning_survive_quantization(self, trial: TrialResult):
        assert trial.metrics["sparsity"] == pytest.approx(0.9, abs=1e-3)
        layers = trial.deployed.module.modules()
        codes = [m.weight().int_repr() for m in layers if hasattr(m, "weight") and callable(m.weight)]
        assert codes  # the reloaded pipeline has int8 layers to inspect
        zeros = sum(int((c == 0).sum()) for c in codes)
        assert zeros >= 0.9 * sum(c.numel() for c in codes) - 1

    def test_its_facts_combine_its_stages(self, trial: TrialResult):
        facts = facts_of(trial.plan.compressor)
        assert (facts.family, facts.training, facts.final) == ("pipeline", "in-training", True)  # distill, quantize


def test_second_distill_trial_reuses_the_cached_teacher(make_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = ("compression=distill", "compression.teacher_epochs=1", "strategy.epochs=1")
    first = plan_trial(make_cfg(*overrides))
    _, first_metrics = first.compressor.teacher(first.context())
    assert first_metrics["teacher_cached"] == 0.0
    assert len(list((tmp_path / ".sweeper_cache" / "teachers").glob("*.pt"))) == 1

    monkeypatch.setattr("sweeper.compression._distill.train", _no_training)  # retraining would fail the test
    second = plan_trial(make_cfg(*overrides))
    ctx = second.context()
    teacher, second_metrics = second.compressor.teacher(ctx)
    assert second_metrics["teacher_cached"] == 1.0
    assert second_metrics["teacher_test_score"] == first_metrics["teacher_test_score"]
    assert teacher(second.task.x_test[:4]).shape == (4, 10)

    other_seed = plan_trial(make_cfg(*overrides, "seed=1"))  # another key: a new teacher
    assert other_seed.compressor.cache_key(replace_seed(ctx, 1)) != second.compressor.cache_key(ctx)


def replace_seed(ctx: CompressionContext, seed: int) -> CompressionContext:
    return replace(ctx, seed=seed)


# --- the command line: every option in one multirun ----------------------------------------------

ALL_OPTIONS = ",".join(compression_options())  # every option the package ships, as its config group lists them


@pytest.mark.slow
@pytest.mark.integration
def test_every_option_runs_in_a_multirun_with_all_metrics(run_cli, tmp_path):
    # The presets' amounts, bits and stages apply; their fine-tuning (5 epochs) and the teacher's training
    # (30 epochs) are cut to 1 epoch each through option knobs (+options.<group>.<option>.<key>), which a
    # grid over options accepts. distill and pipeline still share one teacher (teacher.epochs for both).
    # A knob scoped to one option changes that option only: qat at 2 bits, quantize keeps its preset's 8.
    tuned = ("prune", "prune_random", "prune_structured", "qat", "mixed", "pipeline.stages.prune")
    finetune = [f"+options.compression.{name}.finetune_epochs=1" for name in tuned] + [
        "+options.compression.qat.bits=2"
    ]
    proc = run_cli(
        "-m",
        f"compression={ALL_OPTIONS}",
        *argv("strategy.epochs=1 teacher.epochs=1 measure.latency_seconds=0.01 measure.latency_batch=32"),
        *finetune,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs("sweeper", sweep_id="latest", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(runs["compression"]) == sorted(ALL_OPTIONS.split(","))
    assert (runs["status"] == "FINISHED").all()
    for metric in FINAL_METRICS:
        assert runs[metric].notna().all(), metric
    by = runs.set_index("compression")
    for name in ("prune", "prune_random", "prune_gradual", "pipeline"):
        assert by.loc[name, "sparsity"] == pytest.approx(0.8, abs=1e-3), name  # the presets' amount
    assert by.loc["qat", "bits"] == 2 and by.loc["quantize", "bits"] == 8
    assert by.loc["qat", "compression.finetune_epochs"] == 1
    assert by.loc["qat", "size_bytes"] < by.loc["none", "size_bytes"] / 4  # 2-bit weights, packed
    assert by.loc["prune", "nonzero_params"] <= 0.6 * by.loc["prune", "params"]
    assert by.loc["prune", "size_bytes"] < by.loc["none", "size_bytes"]
    assert by.loc["prune_structured", "params"] < by.loc["none", "params"]
    for name in ("quantize", "qat"):
        assert by.loc[name, "size_bytes"] <= 0.35 * by.loc["none", "size_bytes"], name
    kinds = by["latency_kind"].to_dict()
    # the kernels that run execute the saving (lowrank: two smaller matmuls per factored layer)
    real = {"none", "prune_structured", "quantize", "distill", "lowrank"}
    assert kinds == {name: "real" if name in real else "simulated" for name in kinds}
    assert by["family"].to_dict() == {name: facts.family for name, facts in compression_options().items()}
    assert by.loc["distill", "teacher_cached"] == 0 and by.loc["pipeline", "teacher_cached"] == 1  # same teacher


# --- a user's own networks through `model._target_` (tests/zoo.py, configs in tests/zoo_conf) -------

ZOO = ("--config-dir", str(REPO_ROOT / "tests" / "zoo_conf"))
ZOO_ENV = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])}


@pytest.mark.slow
@pytest.mark.integration
def test_a_method_that_cannot_handle_a_layer_fails_its_trial_and_the_grid_goes_on(run_cli, tmp_path):
    proc = run_cli(
        *ZOO,
        *argv(
            "-m model=row_gru compression=none,prune_structured,prune strategy.epochs=1 measure.latency_seconds=0.01"
        ),
        env=ZOO_ENV,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # a trial failed
    assert "1 trial failed" in proc.stderr
    said = re.search(r"job 1 \(.*compression=prune_structured.*\) will fail: (.*)", proc.stdout + proc.stderr)
    assert said and "cannot handle layer gru (GRU)" in said.group(1)  # said before the first trial trained
    assert (proc.stdout + proc.stderr).index("will fail") < proc.stdout.index("trial 1/3")
    runs = load_runs(sweep_id="latest", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").set_index("compression")
    assert runs.loc["none", "status"] == runs.loc["prune", "status"] == "FINISHED"
    assert runs.loc["prune_structured", "status"] == "FAILED"
    reason = runs.loc["prune_structured", "failure_reason"]
    assert "compression=prune_structured" in reason and "gru (GRU)" in reason


def test_a_grid_reports_every_bad_job_before_any_training(run_cli, tmp_path):
    proc = run_cli("-m", "compression=prune,prune_random,qat", "compression.amount=0.5,1.5", "strategy.epochs=50")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("sweeper: error:")]
    assert lines[0] == "sweeper: error: 4 of 6 jobs have bad input; nothing was trained"
    assert sum("compression.amount=1.5: must be in [0, 1)" in line for line in lines) == 2  # prune, prune_random
    assert sum("(compression=qat compression.amount=" in line and "unknown key" in line for line in lines) == 2
    assert len(lines) == 5 and "Launching" not in proc.stdout + proc.stderr  # no job was launched


def test_a_batchnorm_channel_left_without_input_is_silenced_not_amplified():
    from sweeper.compression._targets import silence_dead_channels

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, bias=False), torch.nn.BatchNorm2d(3, momentum=None))
    with torch.no_grad():  # momentum=None: running stats are the average over the batches seen
        net[0].weight[1] = 0  # pruned away: channel 1 is constant
        net.train()
        for _ in range(10):
            net(torch.randn(8, 1, 6, 6))
    net.eval()
    assert net[1].running_var[1] <= net[1].eps < net[1].running_var[0]
    assert silence_dead_channels(net) == 1
    assert net[1].weight[1] == 0 and net[1].weight[0] != 0
    with torch.no_grad():
        out = net(torch.randn(4, 1, 6, 6) * 1e-3)
    torch.testing.assert_close(out[:, 1], torch.full_like(out[:, 1], float(net[1].bias[1].detach())))
