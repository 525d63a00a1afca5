"""``compression=prune_structured`` on user models (tests/zoo.py) and the built-ins.

Each model is trained for one epoch, pruned at amount 0.5, fine-tuned for one epoch, saved
and reloaded once (a module-scoped cache); the tests read those trials. The checks run on
untrained models: nothing is trained there.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from trials import with_nodes

from sweeper.artifact import load_artifact, save_artifact
from sweeper.compression import Compressed, UnsupportedLayer
from sweeper.errors import ConfigError
from sweeper.training import train
from sweeper.trial.measure import count_params
from sweeper.trial.plan import TrialPlan, plan_trial

AMOUNT = 0.5
MakeCfg = Callable[..., DictConfig]
TOKENS = {"_target_": "zoo.digit_tokens", "positional": True}  # ids up to 64 * 17: BagOfTokens' vocabulary
PIXEL_TOKENS = {"_target_": "zoo.digit_tokens", "positional": False}  # ids up to 17: SequenceCNN's vocabulary
MODELS: dict[str, tuple[dict[str, Any] | str, dict[str, Any] | None]] = {  # model node or built-in option, data node
    "tiny_resnet": ({"_target_": "zoo.TinyResNet"}, None),
    "tiny_transformer": ({"_target_": "zoo.TinyTransformer"}, None),
    "bag_of_tokens": ({"_target_": "zoo.BagOfTokens"}, TOKENS),
    "sequence_cnn": ({"_target_": "zoo.SequenceCNN"}, PIXEL_TOKENS),
    "cnn": ("cnn", None),
    "mlp": ("mlp", None),
}


def _config(
    make_cfg: MakeCfg, model: dict[str, Any] | str, data: dict[str, Any] | None = None, *overrides: str
) -> DictConfig:
    """A prune_structured trial (1 epoch, 1 fine-tuning epoch) of ``model`` (a node, or a built-in option) on ``data``."""
    builtin = [f"model={model}"] if isinstance(model, str) else []
    method = ["compression=prune_structured", f"compression.amount={AMOUNT}", "compression.finetune_epochs=1"]
    cfg = make_cfg(*builtin, *method, "strategy.epochs=1", *overrides)  # later overrides win
    return with_nodes(cfg, model=model, data=data)


def _classifier(model: nn.Module) -> nn.Linear:
    """The output layer of every model here: its last Linear."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def _widths(model: nn.Module) -> dict[str, int]:
    """The output width of every layer that pruning may narrow, by name (the classifier excluded)."""
    classifier = _classifier(model)
    widths = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            widths[name] = m.embed_dim
        elif isinstance(m, nn.Embedding | nn.EmbeddingBag):
            widths[name] = m.embedding_dim
        elif isinstance(m, nn.modules.conv._ConvNd):
            widths[name] = m.out_channels
        elif isinstance(m, nn.Linear) and m is not classifier:
            widths[name] = m.out_features
    return widths


@dataclass
class Pruned:
    """A trained model, pruned, fine-tuned, saved and reloaded."""

    plan: TrialPlan
    dense_widths: dict[str, int]
    dense_params: int
    compressed: Compressed
    reloaded: nn.Module
    x: Tensor


Trials = tuple[dict[str, Pruned], Path]  # trials by model key, and where their artifacts go


@pytest.fixture(scope="module")
def _trials(tmp_path_factory: pytest.TempPathFactory) -> Trials:
    """Trials by model key, filled on first use: each model trains once for the whole module."""
    return {}, tmp_path_factory.mktemp("structured")


def _pruned(key: str, make_cfg: MakeCfg, trials: Trials) -> Pruned:
    """The trial of model ``key``: trained, pruned, fine-tuned, saved and reloaded on first use."""
    cache, directory = trials
    if key not in cache:
        plan = plan_trial(_config(make_cfg, *MODELS[key]))
        assert plan.unsupported is None, plan.unsupported
        train(plan.model, plan.task, plan.optimizer_factory, plan.strategy, seed=plan.seed)
        trained = plan.model.cpu().eval()
        widths, params = _widths(trained), count_params(trained)[0]
        compressed = plan.compressor.compress(trained, plan.context())
        path = directory / f"{key}.pt"
        save_artifact(path, compressed.kind, compressed.spec or plan.spec, compressed.payload)
        cache[key] = Pruned(plan, widths, params, compressed, load_artifact(path), plan.task.x_test[:64])
    return cache[key]


@pytest.fixture(params=list(MODELS))
def pruned(request: pytest.FixtureRequest, make_cfg: MakeCfg, _trials: Trials) -> Pruned:
    return _pruned(request.param, make_cfg, _trials)


@pytest.fixture
def transformer(make_cfg: MakeCfg, _trials: Trials) -> Pruned:
    return _pruned("tiny_transformer", make_cfg, _trials)


# --- every model: smaller, same classes, reloaded exactly ----------------------------------------


def test_reloaded_model_is_smaller_and_keeps_its_classes(pruned: Pruned):
    assert count_params(pruned.reloaded)[0] <= 0.7 * pruned.dense_params
    num_classes = pruned.plan.task.num_classes
    assert pruned.reloaded(pruned.x).shape == (len(pruned.x), num_classes)
    assert (
        _classifier(pruned.reloaded).out_features == _classifier(pruned.compressed.module).out_features == num_classes
    )
    assert (pruned.compressed.kind, pruned.compressed.latency_kind) == ("structured", "real")


def test_every_coupled_width_loses_the_amount_but_the_classifier(pruned: Pruned):
    expected = {name: int(width * (1 - AMOUNT)) for name, width in pruned.dense_widths.items()}
    assert _widths(pruned.reloaded) == expected


def test_reloaded_outputs_match_the_in_memory_model(pruned: Pruned):
    with torch.no_grad():
        expected = pruned.compressed.module(pruned.x)
        got = pruned.reloaded(pruned.x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert {k: v.shape for k, v in pruned.reloaded.state_dict().items()} == {
        k: v.shape for k, v in pruned.compressed.module.state_dict().items()
    }


# --- attention ---------------------------------------------------------------------------------------


def test_attention_keeps_its_heads_and_the_encoder_shrinks(transformer: Pruned):
    model = transformer.reloaded
    width = model.embed.out_features
    assert width < 32 and model.position.shape == (1, 8, width) and model.norm.normalized_shape == (width,)
    attentions = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    assert len(attentions) == 2
    for attention in attentions:
        assert attention.num_heads == 4 and attention.embed_dim == width
        assert attention.embed_dim % attention.num_heads == 0
        assert attention.head_dim * attention.num_heads == attention.embed_dim
        assert attention.in_proj_weight.shape == (3 * width, width)
    for layer in model.encoder.layers:
        assert layer.linear1.out_features < 64 and layer.linear2.out_features < 32
        assert layer.linear1.in_features == layer.linear2.out_features == width


def test_reloaded_encoder_fast_path_agrees_with_the_standard_path(transformer: Pruned):
    model = transformer.reloaded.eval()
    with torch.no_grad():  # eval and no grad: TransformerEncoderLayer runs its fused kernel
        fused = model(transformer.x)
    standard = model(transformer.x).detach()  # parameters need grad: the layer-by-layer path
    torch.testing.assert_close(fused, standard, rtol=1e-4, atol=1e-4)


def test_every_head_keeps_its_own_dimensions(make_cfg):
    """The q/k/v rows kept are the same positions inside every head, and the columns follow the residual stream."""
    plan = plan_trial(_config(make_cfg, *MODELS["tiny_transformer"], "compression.finetune_epochs=0"))
    dense = copy.deepcopy(plan.model)
    model = plan.compressor.compress(plan.model, plan.context()).module  # untrained: enough to see which rows stay
    kept = [
        int((dense.embed.weight == row).all(dim=1).nonzero()) for row in model.embed.weight
    ]  # residual channels kept
    head_dim = 32 // 4
    offsets = [[k - h * head_dim for k in kept if k // head_dim == h] for h in range(4)]
    assert all(o == offsets[0] for o in offsets) and len(offsets[0]) == head_dim // 2
    for before, after in zip(dense.encoder.layers, model.encoder.layers, strict=True):
        rows = [k + block * 32 for block in range(3) for k in kept]  # the same positions in q, k and v
        torch.testing.assert_close(after.self_attn.in_proj_weight, before.self_attn.in_proj_weight[rows][:, kept])
        torch.testing.assert_close(after.self_attn.out_proj.weight, before.self_attn.out_proj.weight[kept][:, kept])


# --- checks, before training ---------------------------------------------------------------------------


class _Mixer(nn.Module):
    """A raw parameter used in an einsum: torch-pruning cannot map its channels."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width, width) / width**0.5)

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bi,ij->bj", x, self.weight)


class _Scale(nn.Module):
    """A raw per-feature scale (a layer scale): element-wise, so its channels follow the features."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.linspace(0.5, 1.5, width))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class MixerNet(nn.Module):
    def __init__(self, *, input_shape: list[int], num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.body.add_module("mix", _Mixer(32))
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class BilinearNet(nn.Module):
    def __init__(self, *, input_shape: list[int], num_classes: int) -> None:
        super().__init__()
        self.features = nn.Linear(64, 16)
        self.pair = nn.Bilinear(16, 16, 16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x.flatten(1))
        return self.head(self.pair(h, h))


class ScaledMLP(nn.Module):
    def __init__(self, *, input_shape: list[int], num_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.scale = _Scale(32)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.scale(self.hidden(x)))


def _no_training(*_args: Any, **_kwargs: Any) -> None:
    raise AssertionError("nothing may be trained in a check")


@pytest.mark.parametrize(("model", "layer"), [(MixerNet, "body.mix (_Mixer)"), (BilinearNet, "pair (Bilinear)")])
def test_a_layer_torch_pruning_cannot_resize_fails_the_trial_naming_it(make_cfg, monkeypatch, model, layer):
    monkeypatch.setattr("sweeper.compression._base.train", _no_training)
    plan = plan_trial(_config(make_cfg, {"_target_": f"{__name__}.{model.__name__}"}))
    assert isinstance(plan.unsupported, UnsupportedLayer)
    assert f"compression=prune_structured: cannot handle layer {layer}" in str(plan.unsupported)
    with pytest.raises(UnsupportedLayer, match=layer.split()[0]):
        plan.compressor.check(plan.model, plan.context())


@pytest.mark.parametrize(
    ("key", "amount", "expected"),
    [
        (
            "tiny_resnet",
            0.95,
            "would remove every channel of layer stem.0 (16 channels); allowed: 0 <= amount <= 0.9375",
        ),
        (  # the residual stream and the attention: 4 heads of 8
            "tiny_transformer",
            0.9,
            "would remove every channel of layer embed (8 channels in each of 4 groups); allowed: 0 <= amount <= 0.875",
        ),
    ],
)
def test_too_large_amount_fails_in_planning_naming_the_layer(make_cfg, key, amount, expected):
    with pytest.raises(ConfigError, match=re.escape("compression.amount")) as info:
        plan_trial(_config(make_cfg, *MODELS[key], f"compression.amount={amount}"))
    assert expected in str(info.value)


def test_check_trains_nothing_and_leaves_the_model_untouched(make_cfg, monkeypatch):
    monkeypatch.setattr("sweeper.compression._base.train", _no_training)
    plan = plan_trial(_config(make_cfg, *MODELS["tiny_transformer"]))
    before = {k: v.clone() for k, v in plan.model.state_dict().items()}
    plan.compressor.check(plan.model, plan.context())
    after = plan.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert plan.model.encoder.layers[0].self_attn.head_dim == 8


def test_a_raw_parameter_of_a_user_module_is_pruned_and_reloaded(make_cfg, tmp_path):
    plan = plan_trial(_config(make_cfg, {"_target_": f"{__name__}.ScaledMLP"}, None, "compression.finetune_epochs=0"))
    assert plan.unsupported is None
    compressed = plan.compressor.compress(plan.model, plan.context())
    save_artifact(tmp_path / "model.pt", compressed.kind, compressed.spec or plan.spec, compressed.payload)
    reloaded = load_artifact(tmp_path / "model.pt")
    assert reloaded.scale.gamma.shape == (16,) and isinstance(reloaded.scale.gamma, nn.Parameter)
    x = plan.task.x_test[:16]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), compressed.module(x), rtol=1e-4, atol=1e-4)
