"""Every compression method on every network shape of the zoo: residual, attention, embeddings, 1-D conv, built-ins.

Each (network, method) pair is one trial run in-process at a tiny budget, saved and reloaded;
the assertions read the reloaded artifact. Networks are trained once per module and shared by
the methods that do not change the main training run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from conftest import compose_config
from omegaconf import DictConfig
from trials import Trial

from sweeper.compression._targets import WeightSelection, weight_refs
from sweeper.trial.measure import count_params

# network -> (overrides selecting it, a wider teacher of the same kind for distillation)
NETWORKS: dict[str, list[str]] = {
    "tiny_resnet": ["model=tiny_resnet"],
    "tiny_transformer": ["model=tiny_transformer"],
    "bag_of_tokens": [
        "data=digit_tokens",
        "data.positional=true",
        "model=bag_of_tokens",
        "compression.teacher_model={_target_: zoo.BagOfTokens, _partial_: true, dim: 64}",
    ],
    "sequence_cnn": [
        "data=digit_tokens",
        "model=token_cnn",
        "compression.teacher_model={_target_: zoo.SequenceCNN, _partial_: true, dim: 32}",
    ],
    "cnn": ["model=cnn"],
    "mlp": ["model=mlp"],
}
TEACHER = "compression.teacher_model"

METHODS: dict[str, list[str]] = {
    "none": [],
    "prune": ["compression.amount=0.8", "compression.finetune_epochs=1", "compression.embeddings=true"],
    "prune_random": ["compression.amount=0.8", "compression.finetune_epochs=0"],
    "prune_gradual": ["compression.amount=0.8", "compression.frequency=2"],
    "prune_structured": ["compression.amount=0.5", "compression.finetune_epochs=1"],
    "quantize": ["compression.calibration_samples=128"],
    "qat": ["compression.bits=4", "compression.finetune_epochs=1"],
    "distill": ["compression.teacher_epochs=1"],
    "mixed": ["compression.finetune_epochs=1", "compression.cache_dir=null"],  # budget: MIXED_SHARE of the dense size
    "pipeline": ["compression.stages.distill.teacher_epochs=1", "compression.stages.prune.finetune_epochs=1"],
    # a smaller network, then its weights quantized: the later stage rebuilds the pruned architecture
    "structured+qat": [
        "compression/stages=[prune_structured,qat]",
        "compression.stages.prune_structured.finetune_epochs=0",
        "compression.stages.qat.finetune_epochs=1",
    ],
    "structured+quantize": [
        "compression/stages=[prune_structured,quantize]",
        "compression.stages.prune_structured.finetune_epochs=0",
    ],
}
PAIRS = [(network, method) for network in NETWORKS for method in METHODS]
MIXED_SHARE = 0.3  # compression=mixed's budget in these trials: this share of the network's dense artifact
UNSTRUCTURED = ("prune", "prune_random", "prune_gradual")


def _overrides(network: str, method: str) -> list[str]:
    overrides = [f"compression={'pipeline' if '+' in method else method}", *METHODS[method]]
    for item in NETWORKS[network]:
        if item.startswith(TEACHER):
            key = {"distill": TEACHER, "pipeline": "compression.stages.distill.teacher_model"}.get(method)
            if key:  # replace the default CNN teacher (its keys differ): delete, then add
                overrides += [f"~{key}", "+" + item.replace(TEACHER, key)]
        else:
            overrides.append(item)
    return overrides


def compose_trial(*overrides: str) -> DictConfig:
    return compose_config("strategy.epochs=1", *overrides, zoo=True)


@pytest.fixture(scope="module")
def trial_of(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str, str], Trial]]:
    """``trial_of(network, method)``: the trial, run once per module (a teacher cache in a temp dir)."""
    root = tmp_path_factory.mktemp("zoo")
    trials: dict[tuple[str, str], Trial] = {}

    def get(network: str, method: str) -> Trial:
        if (network, method) not in trials:
            overrides = _overrides(network, method)
            if method == "mixed":
                overrides.append(f"compression.budget_kb={MIXED_SHARE * get(network, 'none').size / 1024}")
            cfg = compose_trial(*overrides)
            trials[network, method] = Trial(cfg, root / f"{network}-{method}.pt")  # the base is trained once
        return trials[network, method]

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        yield get


@pytest.mark.parametrize(("network", "method"), PAIRS)
def test_reloaded_artifact_runs_and_matches_the_in_memory_model(trial_of, network, method):
    trial = trial_of(network, method)
    with torch.no_grad():
        expected = trial.compressed.module(trial.x)
        got = trial.reloaded(trial.x)
    assert got.shape == (len(trial.x), trial.plan.task.num_classes)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", UNSTRUCTURED)
@pytest.mark.parametrize("network", NETWORKS)
def test_pruned_weights_are_zero_in_the_reloaded_artifact(trial_of, network, method):
    trial = trial_of(network, method)
    refs = weight_refs(trial.reloaded, WeightSelection(embeddings=method == "prune"))  # prune opts embeddings in
    zeros = sum(int((r.tensor == 0).sum()) for r in refs)
    total = sum(r.tensor.numel() for r in refs)
    assert abs(zeros - 0.8 * total) <= 1
    params, nonzero = count_params(trial.reloaded)
    if method == "prune" or network not in ("bag_of_tokens", "sequence_cnn"):  # else the tables stay dense
        assert nonzero <= 0.6 * params
    if network == "tiny_transformer":  # the packed attention projections are pruned too
        attention = [r for r in refs if r.attr == "in_proj_weight"]
        assert attention and sum(int((r.tensor == 0).sum()) for r in attention) > 0


@pytest.mark.parametrize("method", ["prune_structured", "structured+qat", "structured+quantize"])
@pytest.mark.parametrize("network", NETWORKS)
def test_structured_pruning_shrinks_the_network_and_keeps_its_outputs(trial_of, network, method):
    trial = trial_of(network, method)
    assert count_params(trial.reloaded)[0] < 0.8 * trial.dense_params
    assert trial.reloaded(trial.x).shape == trial.dense_outputs.shape


@pytest.mark.parametrize(("method", "at_most"), [("quantize", 0.5), ("qat", 0.5), ("pipeline", 0.35)])
@pytest.mark.parametrize("network", NETWORKS)
def test_quantized_artifacts_are_smaller_by_the_expected_factor(trial_of, network, method, at_most):
    trial = trial_of(network, method)
    assert trial.size <= at_most * trial.dense_bytes


@pytest.mark.parametrize("network", NETWORKS)
def test_qat_weights_take_at_most_two_to_the_bits_levels(trial_of, network):
    trial = trial_of(network, "qat")
    for ref in weight_refs(trial.reloaded, WeightSelection(embeddings=True)):
        levels = max(row.unique().numel() for row in ref.tensor.detach().flatten(1))
        assert levels <= 2**4, ref.name


@pytest.mark.parametrize("network", NETWORKS)
def test_mixed_meets_its_budget_with_the_settings_it_logs(trial_of, network):
    trial = trial_of(network, "mixed")
    assert trial.size <= trial.metrics["budget_bytes"]  # the reloaded artifact's bytes
    params = trial.compressed.params
    refs = weight_refs(trial.reloaded, WeightSelection(embeddings=True))
    assert {f"layers.{r.name}.bits" for r in refs} | {f"layers.{r.name}.sparsity" for r in refs} == set(params)
    for ref in refs:
        bits, sparsity = params[f"layers.{ref.name}.bits"], params[f"layers.{ref.name}.sparsity"]
        assert int((ref.tensor == 0).sum()) >= round(sparsity * ref.tensor.numel()), ref.name
        if bits < 32:
            levels = max(row.unique().numel() for row in ref.tensor.detach().flatten(1))
            assert levels <= 2**bits, ref.name
    assert {"sensitivity", "allocation"} <= set(trial.compressed.tables)  # data; the report draws them


@pytest.mark.parametrize("network", NETWORKS)
def test_distilled_student_is_the_trial_model_with_a_wider_teacher(trial_of, network):
    trial = trial_of(network, "distill")
    assert count_params(trial.reloaded)[0] == trial.dense_params
    assert trial.metrics["teacher_params"] > trial.dense_params


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("method", ["prune", "quantize", "qat"])
def test_recurrent_weights_a_method_leaves_alone_are_counted_and_said(method, cell, tmp_path, caplog):
    from sweeper.trial.context import JobContext
    from sweeper.trial.run import run

    cfg = compose_config("model=row_gru", f"+model.cell={cell}", f"compression={method}", "strategy.epochs=1", zoo=True)
    with caplog.at_level("WARNING", logger="sweeper"):
        result = run(cfg, JobContext.standalone(tmp_path))
    assert result.metrics["uncompressed_share"] > 0.5  # the recurrent layer holds most of the weights
    assert "left" in caplog.text and cell.upper() in caplog.text


def test_the_report_warns_of_a_partly_compressed_network(make_runs, tmp_path):
    import pandas as pd

    from sweeper.report.build import write_report
    from sweeper.report.recommend import Budget

    runs = make_runs(
        dict(compression="none"),
        dict(compression="prune", uncompressed_share=0.86, uncompressed_layers="GRU"),
        dict(compression="qat", uncompressed_share=0.0),
    )
    write_report(runs, pd.DataFrame(columns=["run_id", "metric", "epoch", "value"]), Budget(), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "`compression=prune` left 86 % of its network's weights uncompressed (GRU layers" in markdown
    assert "`compression=qat` left" not in markdown
