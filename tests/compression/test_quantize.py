"""compression=quantize on any module: the FX and eager flows, the attention swap, the int8 artifact.

Each zoo network (residual CNN with BatchNorm, Transformer encoder, embedding bag, 1-D conv
over tokens) and each built-in is trained once (5 epochs) and quantized by the default flow
(FX) and by the eager fallback; the assertions read the reloaded artifact.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
import zoo
from conftest import ZOO_CONF
from omegaconf import DictConfig
from torch import Tensor, nn
from trials import Trial, with_nodes

from sweeper.compression import UnsupportedLayer
from sweeper.compression._attention import ExplicitAttention, make_quantizable
from sweeper.compression._quantize import FLOWS, Int8Quantization, _quantize_weights
from sweeper.compression._storage import decode_state, encode_state
from sweeper.testing import CompressionContract

pytestmark = pytest.mark.usefixtures("one_thread")  # the test workers share the cores

TOKENS = {"_target_": "zoo.digit_tokens", "positional": False}
# network -> (its model: a built-in's override or a plug-in's node, its data node, the int8 layer kinds it holds)
NETWORKS: dict[str, tuple[str | dict, dict | None, set[str]]] = {
    "TinyResNet": ({"_target_": "zoo.TinyResNet"}, None, {"conv", "linear"}),
    "TinyTransformer": ({"_target_": "zoo.TinyTransformer"}, None, {"linear"}),
    "BagOfTokens": ({"_target_": "zoo.BagOfTokens"}, {**TOKENS, "positional": True}, {"embedding_bag", "linear"}),
    "SequenceCNN": ({"_target_": "zoo.SequenceCNN"}, TOKENS, {"embedding", "conv", "linear"}),
    "cnn": ("model=cnn", None, {"conv", "linear"}),
    "mlp": ("model=mlp", None, {"linear"}),
}
INT8 = {  # fused variants (ConvReLU, dynamic LinearReLU) subclass these; EmbeddingBag is checked before Embedding
    "conv": (nnq.Conv1d, nnq.Conv2d),
    "linear": (nnqd.Linear,),
    "embedding_bag": (nnq.EmbeddingBag,),
    "embedding": (nnq.Embedding,),
}
FLOAT_QUANTIZABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding, nn.EmbeddingBag, nn.MultiheadAttention)
MAX_ACCURACY_DROP = 0.03
EPOCHS = 5  # a second each; at 2 epochs some networks are near chance, where the accuracy check says little


def _config(make_cfg: Callable[..., DictConfig], model: str | dict, data: dict | None, *overrides: str) -> DictConfig:
    builtin = [model] if isinstance(model, str) else []
    quantize = ["compression=quantize", "compression.calibration_samples=256"]
    return with_nodes(make_cfg(*builtin, f"strategy.epochs={EPOCHS}", *quantize, *overrides), model=model, data=data)


@pytest.fixture(scope="module")
def _trials(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], Trial]]:
    """Where the artifacts go, and the trials run so far in this module (one per network and flow)."""
    return tmp_path_factory.mktemp("quantize"), {}


@pytest.fixture
def trial_of(make_cfg, _trials) -> Callable[[str, str], Trial]:
    """``trial_of(network, flow)``: the network trained once (its base is shared), quantized by ``flow``."""
    root, trials = _trials

    def get(network: str, flow: str) -> Trial:
        if (network, flow) not in trials:
            model, data, _ = NETWORKS[network]
            cfg = _config(make_cfg, model, data, *([] if flow == "fx" else [f"compression.flow={flow}"]))
            trials[network, flow] = Trial(cfg, root / f"{network}-{flow}.pt")
        return trials[network, flow]

    return get


PAIRS = pytest.mark.parametrize(("network", "flow"), [(n, f) for n in NETWORKS for f in FLOWS])


@PAIRS
def test_every_linear_conv_and_embedding_is_int8_in_the_reloaded_artifact(trial_of, network, flow):
    trial = trial_of(network, flow)
    still_float = [name for name, m in trial.reloaded.named_modules() if type(m) in FLOAT_QUANTIZABLE]
    assert not still_float
    int8 = Counter(_int8_kind(m) for m in trial.reloaded.modules())
    assert set(int8) - {None} == NETWORKS[network][2]
    float_layers = Counter(_float_kind(m) for m in trial.plan.model.modules())  # one int8 layer for each
    float_layers["linear"] += 3 * float_layers.pop("attention", 0)  # q, k, v projections besides out_proj
    assert {k: n for k, n in int8.items() if k} == {k: n for k, n in float_layers.items() if k}


def _int8_kind(module: nn.Module) -> str | None:
    return next((kind for kind, types in INT8.items() if isinstance(module, types)), None)


def _float_kind(module: nn.Module) -> str | None:
    kinds = {
        nn.Conv1d: "conv",
        nn.Conv2d: "conv",
        nn.EmbeddingBag: "embedding_bag",
        nn.Embedding: "embedding",
        nn.MultiheadAttention: "attention",
    }
    return "linear" if isinstance(module, nn.Linear) else kinds.get(type(module))


@pytest.mark.parametrize("flow", FLOWS)
def test_transformer_attention_projections_and_ffn_are_dynamic_int8(trial_of, flow):
    trial = trial_of("TinyTransformer", flow)
    modules = dict(trial.reloaded.named_modules())
    layers = [name for name, m in modules.items() if isinstance(m, nn.TransformerEncoderLayer)]
    assert len(layers) == 2
    for layer in layers:
        assert isinstance(modules[f"{layer}.self_attn"], ExplicitAttention)
        projections = [f"self_attn.{p}_proj" for p in ("q", "k", "v", "out")]
        for name in (*projections, "linear1", "linear2"):
            assert isinstance(modules[f"{layer}.{name}"], nnqd.Linear), name
    assert any(isinstance(m, nn.MultiheadAttention) for m in trial.plan.model.modules())  # the float model is untouched


@PAIRS
def test_reloaded_outputs_match_the_in_memory_int8_model(trial_of, network, flow):
    trial = trial_of(network, flow)
    with torch.no_grad():
        expected, got = trial.compressed.module(trial.x), trial.reloaded(trial.x)
    assert got.shape == (len(trial.x), trial.plan.task.num_classes)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@PAIRS
def test_artifact_is_at_most_half_the_fp32_one(trial_of, network, flow):
    trial = trial_of(network, flow)
    assert trial.size <= 0.5 * trial.dense_bytes


@PAIRS
def test_int8_accuracy_is_within_a_few_points_of_the_float_model(trial_of, network, flow):
    trial = trial_of(network, flow)
    task = trial.plan.task
    float_accuracy = task.evaluate(trial.plan.model, "test")["accuracy"]
    assert abs(trial.metrics["test_accuracy"] - float_accuracy) <= MAX_ACCURACY_DROP


@PAIRS
def test_the_flow_is_tagged_and_stored_for_the_loader(trial_of, network, flow):
    compressed = trial_of(network, flow).compressed
    assert compressed.tags == {"quantization_flow": flow}  # FX traced every network: no fallback reason
    assert compressed.payload["flow"] == flow
    assert (compressed.kind, compressed.latency_kind, compressed.metrics) == (
        "int8",
        "real",
        {"bits": 8.0, "dead_channels": 0.0},
    )


# --- a model FX cannot trace ---------------------------------------------------------------------------


class Branchy(nn.Module):
    """Conv-BN-ReLU and a classifier, with a branch on the data in between (FX cannot trace it)."""

    def __init__(self, *, input_shape: list[int], num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(input_shape[0], 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8 * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        if x.mean() > 1.0:  # data-dependent control flow
            x = x / 2
        return self.head(x.flatten(1))


def test_a_model_fx_cannot_trace_is_quantized_by_the_eager_flow(make_cfg, tmp_path):
    trial = Trial(_config(make_cfg, {"_target_": f"{__name__}.Branchy"}, None, "strategy.epochs=1"), tmp_path / "m.pt")
    tags = trial.compressed.tags
    assert tags["quantization_flow"] == "eager" and trial.compressed.payload["flow"] == "eager"
    assert "TraceError" in tags["quantization_fallback"]
    modules = list(trial.reloaded.modules())
    assert any(isinstance(m, nniq.ConvReLU2d) for m in modules)  # conv+bn+relu fused in its nn.Sequential
    assert any(isinstance(m, nnqd.Linear) for m in modules)
    with torch.no_grad():
        torch.testing.assert_close(trial.reloaded(trial.x), trial.compressed.module(trial.x), rtol=1e-4, atol=1e-4)


# --- the attention swap --------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [False, True], ids=["no-mask", "key-padding-mask"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_explicit_attention_equals_multihead_attention(batch_first, padding):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
    explicit = ExplicitAttention.from_float(mha)
    query, memory = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    for keys in (query, memory):  # self- and cross-attention
        length = keys.shape[1]
        mask = torch.arange(length) >= torch.tensor([[length], [4], [2]]) if padding else None  # 0, 1 and 3 padded keys
        args = (query, keys, keys) if batch_first else tuple(t.transpose(0, 1) for t in (query, keys, keys))
        for need_weights in (True, False):
            with torch.no_grad():
                want = mha(*args, key_padding_mask=mask, need_weights=need_weights)
                got = explicit(*args, key_padding_mask=mask, need_weights=need_weights)
            torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-5)
            if need_weights:
                torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-5)
            else:
                assert got[1] is None and want[1] is None


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_swapped_transformers_equal_the_originals():
    torch.manual_seed(0)
    model = zoo.TinyTransformer(input_shape=[1, 8, 8], num_classes=10).eval()
    x = torch.randn(4, 1, 8, 8)
    swapped = make_quantizable(copy.deepcopy(model))
    assert not any(isinstance(m, nn.MultiheadAttention) for m in swapped.modules())
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), model(x), rtol=0, atol=1e-5)

    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()  # the nested-tensor fast path
    src, padding = torch.randn(3, 6, 16), torch.zeros(3, 6, dtype=torch.bool)
    padding[1, 4:] = True
    with torch.no_grad():
        want = encoder(src, src_key_padding_mask=padding)
        got = make_quantizable(copy.deepcopy(encoder))(src, src_key_padding_mask=padding)
    torch.testing.assert_close(got[~padding], want[~padding], rtol=0, atol=1e-5)  # the fast path zeroes padded rows


# --- check: only what truly cannot be handled fails -------------------------------------------------------


class _Scale(nn.Module):
    """A user's own layer: it stays float."""

    def forward(self, x: Tensor) -> Tensor:
        return 2 * x


class _AttentionWithBiasKV(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, add_bias_kv=True, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.attn(x, x, x)[0].mean(dim=1))


def test_check_fails_only_for_what_cannot_be_quantized():
    method = Int8Quantization()
    method.check(nn.Sequential(_Scale(), nn.Flatten(), nn.Linear(4, 2)), None)  # a custom layer is fine: it stays float
    with pytest.raises(UnsupportedLayer, match=r"layer <model> \(Sequential\): no Linear, convolution or embedding"):
        method.check(nn.Sequential(_Scale(), nn.LayerNorm(4)), None)
    with pytest.raises(UnsupportedLayer, match=r"layer attn \(MultiheadAttention\): add_bias_kv=True"):
        method.check(_AttentionWithBiasKV(), None)
    with pytest.raises(ValueError, match=re.escape("compression.flow='jit': allowed: auto, fx, eager")):
        Int8Quantization(flow="jit")


# --- int8 embeddings ---------------------------------------------------------------------------------


def test_int8_embedding_bags_mean_like_the_float_ones_and_their_rows_round_trip():
    torch.manual_seed(0)
    bags = nn.ModuleDict(
        {
            "mean": nn.EmbeddingBag(50, 8, mode="mean"),
            "sum": nn.EmbeddingBag(50, 8, mode="sum"),
            "mean_last": nn.EmbeddingBag(50, 8, mode="mean", include_last_offset=True),
        }
    )
    quantized = _quantize_weights(copy.deepcopy(bags))
    ids, flat, offsets = torch.randint(0, 50, (4, 6)), torch.randint(0, 50, (9,)), torch.tensor([0, 3, 3, 8])
    inputs = {  # fixed-size bags; bags by offsets, one of them empty
        "mean": [(ids,), (flat, offsets)],
        "sum": [(ids,), (flat, offsets)],
        "mean_last": [(flat, torch.cat([offsets, torch.tensor([9])]))],
    }
    for name, cases in inputs.items():
        assert isinstance(quantized[name], nnq.EmbeddingBag)
        for args in cases:
            torch.testing.assert_close(quantized[name](*args), bags[name](*args).detach(), rtol=0, atol=0.05)

    state = quantized.state_dict()
    table = state["mean._packed_params._packed_weight"]
    assert table.qscheme() == torch.per_channel_affine_float_qparams
    rebuilt = decode_state(encode_state(state))["mean._packed_params._packed_weight"]
    assert rebuilt.qscheme() == torch.per_channel_affine_float_qparams
    assert torch.equal(rebuilt.int_repr(), table.int_repr()) and torch.equal(rebuilt.dequantize(), table.dequantize())


class TestInt8OnAMobileNet(CompressionContract):
    """Depthwise-separable convolutions, BatchNorm, SiLU and Hardswish, a squeeze-excitation gate and residual adds:
    the int8 network keeps quantized activations' settings in its state (a qscheme), which the artifact stores."""

    overrides = ("model=tiny_mobilenet", "compression=quantize", "compression.calibration_samples=128")
    config_dir = str(ZOO_CONF)
    min_ratio = 2.0  # at most half the float artifact


class TestPipelineOnAMobileNet(CompressionContract):
    overrides = (
        "model=tiny_mobilenet",
        "compression=pipeline",
        "teacher.epochs=1",
        "compression.stages.prune.finetune_epochs=1",
    )
    config_dir = str(ZOO_CONF)
    min_ratio = 2.0
    latency_kind = "simulated"
