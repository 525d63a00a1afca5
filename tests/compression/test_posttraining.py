"""The post-training methods on Linear layers (rtn, gptq, awq, sparsegpt, wanda, magnitude, lowrank): the contract
suite on the default network and on attention networks, their artifacts, and bad input."""

from __future__ import annotations

import torch
from conftest import ZOO_CONF, compose_config
from torch import nn

from sweeper.compression._lowrank import LowRankLinear
from sweeper.compression._posttraining import parse_pattern
from sweeper.testing import CompressionContract
from sweeper.trial.plan import plan_trial
from sweeper.trial.run import TrialResult

CALIBRATION = "compression.calibration_samples=64"


def _linear_weights(trial: TrialResult) -> dict[str, torch.Tensor]:
    """The reloaded network's Linear weights, the output layer's left out (keep_output)."""
    layers = [(n, m) for n, m in trial.deployed.module.named_modules() if isinstance(m, nn.Linear)]
    return {name: module.weight.detach() for name, module in layers[:-1]}


class TestRtn(CompressionContract):
    overrides = ("compression=rtn", "compression.bits=4")
    min_ratio = 1.3  # the CNN's hidden Linear at 4 bits; its convolutions and classifier stay float32
    latency_kind = "simulated"

    def test_each_output_channel_holds_at_most_two_to_the_bits_levels(self, trial: TrialResult):
        for name, weight in _linear_weights(trial).items():
            assert max(row.unique().numel() for row in weight) <= 2**4, name


class TestGptq(TestRtn):
    overrides = ("compression=gptq", "compression.bits=4", CALIBRATION)


class TestAwq(CompressionContract):
    overrides = ("compression=awq", "compression.bits=4", CALIBRATION)
    min_ratio = 1.3
    latency_kind = "simulated"


class Pruned(CompressionContract):
    min_ratio = 1.2  # the hidden Linear's kept half as bitmask + values
    latency_kind = "simulated"


class TestSparseGpt(Pruned):
    overrides = ("compression=sparsegpt", "compression.pattern=2:4", CALIBRATION)

    def test_every_group_of_four_inputs_keeps_two(self, trial: TrialResult):
        for name, weight in _linear_weights(trial).items():
            groups = (weight != 0).reshape(weight.shape[0], -1, 4).sum(-1)
            assert (groups <= 2).all(), name
        assert 0.5 <= trial.metrics["sparsity"] < 0.6  # inputs that never fire (after a ReLU) lose their column too
        assert trial.deployed.compressed.tags["pattern"] == "2:4"


class TestWanda(Pruned):
    overrides = ("compression=wanda", "compression.amount=0.6", CALIBRATION)

    def test_each_row_loses_the_requested_share(self, trial: TrialResult):
        for name, weight in _linear_weights(trial).items():
            zeros = (weight == 0).sum(dim=1)
            assert (zeros == int(0.6 * weight.shape[1])).all(), name


class TestMagnitude(TestWanda):
    overrides = ("compression=magnitude", "compression.amount=0.6")


class TestLowRank(CompressionContract):
    overrides = ("compression=lowrank", "compression.rank=8")
    min_ratio = 1.5
    family = "low-rank"

    def test_the_layers_run_as_two_factors(self, trial: TrialResult):
        factored = [m for m in trial.deployed.module.modules() if isinstance(m, LowRankLinear)]
        assert factored and all(m.rank <= 8 for m in factored)


class TestGptqOnATransformer(CompressionContract):
    """Attention projections and feed-forward layers of an nn.TransformerEncoder, calibrated block by block."""

    overrides = ("model=tiny_transformer", "compression=gptq", "compression.bits=4", CALIBRATION)
    config_dir = str(ZOO_CONF)
    min_ratio = 2.0
    latency_kind = "simulated"


class TestSparseGptOnATransformer(CompressionContract):
    overrides = ("model=tiny_transformer", "compression=sparsegpt", CALIBRATION)
    config_dir = str(ZOO_CONF)
    min_ratio = 1.3
    latency_kind = "simulated"


class TestAwqOnAHuggingFaceEncoder(CompressionContract):
    """A Hugging Face BERT on token ids (the text field's network at a tiny size)."""

    overrides = (
        "data=digit_tokens",
        "model=bert",
        "model.vocab=17",
        "model.hidden=32",
        "compression=awq",
        "compression.bits=4",
        CALIBRATION,
    )
    min_ratio = 1.5
    latency_kind = "simulated"


def test_a_model_without_a_linear_layer_to_act_on_fails_that_trial_only():
    plan = plan_trial(compose_config("model=row_gru", "compression=gptq", zoo=True))  # its only Linear is the head
    assert plan.unsupported is not None and "no nn.Linear layer besides its output layer" in str(plan.unsupported)


def test_a_pattern_is_n_of_m():
    assert parse_pattern("2:4") == (2, 4) and parse_pattern(None) is None


TINY_LM = ("data=lm_text", "model=tiny_llama", "data.length=32", "data.vocab_size=500", "data.eval_windows=8")


class TestGptqOnATinyLlama(CompressionContract):
    """A Hugging Face Llama (decoder blocks, grouped-query attention, gated MLP), calibrated block by block."""

    overrides = (*TINY_LM, "compression=gptq", "compression.bits=4", "compression.group_size=32", CALIBRATION)
    min_ratio = 1.5  # its tied embedding / output table stays float32
    latency_kind = "simulated"


class TestWandaTwoFourOnATinyLlama(CompressionContract):
    overrides = (*TINY_LM, "compression=wanda", "compression.pattern=2:4", CALIBRATION)
    min_ratio = 1.1
    latency_kind = "simulated"


class TestLowRankOnATinyLlama(CompressionContract):
    overrides = (*TINY_LM, "compression=lowrank", "compression.energy=0.5")
    min_ratio = 1.05
    family = "low-rank"
