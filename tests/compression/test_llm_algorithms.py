"""The post-training algorithm cores (GPTQ, SparseGPT, Wanda, AWQ, SmoothQuant, low rank) and calibration."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from sweeper.compression._awq import apply_input_scales, awq_scales, smoothquant_scales
from sweeper.compression._calibration import LinearStats, calibrate_and_apply, sequential_blocks
from sweeper.compression._gptq import _gptq, gptq
from sweeper.compression._lowbit import (
    dequantize_codes,
    nm_mask,
    pack_codes,
    pack_nm,
    quant_grid,
    quantize_codes,
    rtn,
    unpack_codes,
    unpack_nm,
)
from sweeper.compression._lowrank import LowRankLinear, lowrank
from sweeper.compression._sparsegpt import sparsegpt
from sweeper.compression._wanda import magnitude, wanda

pytestmark = pytest.mark.usefixtures("one_thread")  # the test workers share the cores


@pytest.fixture(scope="module")
def layer() -> tuple[Tensor, Tensor, Tensor]:
    """A 256x512 weight, 2,048 correlated inputs (low-rank mix plus noise, 32 channels 10x larger), their Hessian."""
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(64, 512, generator=gen) / 8
    x = torch.randn(2048, 64, generator=gen) @ mix + 0.1 * torch.randn(2048, 512, generator=gen)
    x[:, :32] *= 10
    weight = torch.randn(256, 512, generator=gen) / math.sqrt(512)
    return weight, x, 2 * x.T @ x / x.shape[0]


def output_error(x: Tensor, weight: Tensor, approx: Tensor) -> float:
    return float((x @ weight.T - x @ approx.T).norm())


# Packing ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(2, 9))
def test_pack_codes_round_trips_densely(bits: int) -> None:
    codes = torch.randint(0, 2**bits, (1001,), generator=torch.Generator().manual_seed(bits), dtype=torch.uint8)
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(1001 * bits / 8)
    assert torch.equal(unpack_codes(packed, bits, 1001), codes)


def test_pack_codes_rejects_codes_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match=r"0\.\.7"):
        pack_codes(torch.tensor([8]), 3)


@pytest.mark.parametrize(("n", "m", "index_bits"), [(2, 4, 2), (4, 8, 3)])
def test_nm_storage_round_trips(n: int, m: int, index_bits: int) -> None:
    weight = magnitude(torch.randn(16, 64), amount=None, pattern=(n, m))
    weight[0, :m] = 0  # a group with fewer than n non-zeros
    values, indices = pack_nm(weight, n, m)
    assert values.shape == (16, 64 // m * n)
    assert indices.numel() == math.ceil(values.numel() * index_bits / 8)
    assert torch.equal(unpack_nm(values, indices, n, m), weight)
    with pytest.raises(ValueError, match=f"more than {n} non-zeros"):
        pack_nm(torch.ones(2, 8), n, m)


def test_nm_mask_keeps_the_largest_scores_of_each_group() -> None:
    scores = torch.tensor([[1.0, 4.0, 3.0, 2.0, 8.0, 5.0, 6.0, 7.0]])
    assert nm_mask(scores, 2, 4).tolist() == [[False, True, True, False, True, False, False, True]]


def test_packed_4bit_weight_takes_half_a_byte_a_value_plus_scales(layer: tuple[Tensor, Tensor, Tensor]) -> None:
    weight = layer[0]
    q = rtn(weight, bits=4, group_size=128, symmetric=True)
    packed = pack_codes(q.codes, 4)
    assert packed.numel() * 2 == weight.numel()
    assert q.scales.shape == (256, 4)
    assert q.nbytes() == weight.numel() // 2 + q.scales.numel() * 4  # symmetric: no zero points stored
    codes = unpack_codes(packed, 4, weight.numel()).reshape(weight.shape)
    assert torch.equal(dequantize_codes(codes, q.scales, q.zeros, 128), q.dequantize())
    assert rtn(weight, bits=4, group_size=128, symmetric=False).nbytes() == q.nbytes() + 256 * 4 // 2


# Quantization ----------------------------------------------------------------------------------------------


def test_quant_grid_checks_its_settings() -> None:
    weight = torch.randn(4, 12)
    for bits in (1, 9, 4.0):
        with pytest.raises(ValueError, match=r"compression\.bits"):
            quant_grid(weight, bits=bits, group_size=-1, symmetric=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"compression\.group_size"):
        quant_grid(weight, bits=4, group_size=5, symmetric=False)
    for group_size in (-1, None, 12):
        assert quant_grid(weight, bits=4, group_size=group_size, symmetric=False)[0].shape == (4, 1)


@pytest.mark.parametrize("symmetric", [False, True])
def test_rtn_rounds_to_the_nearest_grid_point(symmetric: bool) -> None:
    weight = torch.randn(8, 64)
    weight[0] = weight[0].abs()  # a row without negative values
    q = rtn(weight, bits=3, group_size=16, symmetric=symmetric)
    assert int(q.codes.max()) <= 7
    step = q.scales.repeat_interleave(16, dim=1)
    # Within half a step everywhere (the symmetric grid's top code is half a step below +max|w|: clipped by that).
    assert bool(((q.dequantize() - weight).abs() <= step * 0.5 + 1e-6).all())
    assert torch.equal(quantize_codes(q.dequantize(), q.scales, q.zeros, 3), q.codes)
    assert rtn(torch.zeros(2, 4), bits=4, group_size=-1, symmetric=False).dequantize().abs().max() == 0


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("group_size", [-1, 128])
def test_gptq_output_error_is_well_below_rtn(layer: tuple[Tensor, Tensor, Tensor], bits: int, group_size: int) -> None:
    weight, x, hessian = layer
    plain = output_error(x, weight, rtn(weight, bits=bits, group_size=group_size, symmetric=False).dequantize())
    errors = {
        (act, static): output_error(
            x,
            weight,
            gptq(
                weight, hessian, bits=bits, group_size=group_size, symmetric=False, act_order=act, static_groups=static
            ).dequantize(),
        )
        for act, static in [(False, False), (True, False), (True, True)]
    }
    assert errors[False, False] < 0.5 * plain
    assert errors[True, False] <= 1.02 * errors[False, False]  # act_order does not hurt
    assert errors[True, True] <= 1.02 * errors[False, False]


@pytest.mark.parametrize("static_groups", [False, True])
def test_gptq_stores_exactly_the_weight_it_chose(layer: tuple[Tensor, Tensor, Tensor], static_groups: bool) -> None:
    weight, _, hessian = layer
    q, chosen = _gptq(
        weight,
        hessian,
        bits=3,
        group_size=64,
        symmetric=False,
        act_order=True,
        static_groups=static_groups,
        block_size=96,  # groups straddle blocks
        keep_weight=True,
    )
    assert chosen is not None and torch.equal(q.dequantize(), chosen)
    assert (q.perm is None) == static_groups  # groups of permuted columns need the permutation
    if static_groups:  # groups of original columns: the plain grouped layout
        assert torch.equal(quantize_codes(chosen, q.scales, q.zeros, 3), q.codes)


def test_lazy_batch_updates_do_not_change_the_result(layer: tuple[Tensor, Tensor, Tensor]) -> None:
    """Blocks (any size, straddling groups) only reorder the same updates: float64 results agree to rounding."""
    weight, _, hessian = (t.double() for t in layer)
    weight = weight[:64, :256]
    hessian = hessian[:256, :256]

    def quantized(block_size: int) -> Tensor:
        q = gptq(weight, hessian, bits=3, group_size=64, symmetric=False, act_order=True, block_size=block_size)
        return q.dequantize()

    def pruned(block_size: int) -> Tensor:
        return sparsegpt(weight, hessian, amount=None, pattern=(2, 4), block_size=block_size)

    for block_size in (7, 96):
        torch.testing.assert_close(quantized(block_size), quantized(256), rtol=0, atol=1e-12)
        torch.testing.assert_close(pruned(block_size), pruned(256), rtol=0, atol=1e-12)


def test_gptq_zeroes_dead_inputs(layer: tuple[Tensor, Tensor, Tensor]) -> None:
    weight, x, _ = layer
    x = x.clone()
    x[:, [3, 100]] = 0
    q = gptq(weight, 2 * x.T @ x / len(x), bits=4, group_size=128, symmetric=True, act_order=True).dequantize()
    assert q[:, [3, 100]].abs().max() == 0 and torch.isfinite(q).all()


# Pruning ---------------------------------------------------------------------------------------------------


def test_sparsegpt_beats_wanda_beats_magnitude_with_exact_row_sparsity(layer: tuple[Tensor, Tensor, Tensor]) -> None:
    weight, x, hessian = layer
    pruned = {
        "sparsegpt": sparsegpt(weight, hessian, amount=0.5),
        "wanda": wanda(weight, x.norm(dim=0), amount=0.5),
        "magnitude": magnitude(weight, amount=0.5),
    }
    for w in pruned.values():
        assert ((w == 0).sum(dim=1) == 256).all()
    error = {name: output_error(x, weight, w) for name, w in pruned.items()}
    assert error["sparsegpt"] < 0.7 * error["wanda"] < 0.7 * error["magnitude"]
    # A share that does not split evenly over SparseGPT's 128-column blocks: still exact per row.
    assert ((sparsegpt(weight, hessian, amount=0.3) == 0).sum(dim=1) == 153).all()


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8)])
def test_nm_pattern_holds_for_all_three(layer: tuple[Tensor, Tensor, Tensor], n: int, m: int) -> None:
    weight, x, hessian = layer
    pruned = {
        "sparsegpt": sparsegpt(weight, hessian, amount=None, pattern=(n, m)),
        "wanda": wanda(weight, x.norm(dim=0), amount=None, pattern=(n, m)),
        "magnitude": magnitude(weight, amount=1 - n / m, pattern=(n, m)),
    }
    for w in pruned.values():
        assert ((w.reshape(-1, m) != 0).sum(dim=1) == n).all()
    assert output_error(x, weight, pruned["sparsegpt"]) < 0.5 * output_error(x, weight, pruned["magnitude"])


def test_pruning_checks_its_settings(layer: tuple[Tensor, Tensor, Tensor]) -> None:
    weight, x, hessian = layer
    for amount in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"compression\.amount"):
            magnitude(weight, amount=amount)
    with pytest.raises(ValueError, match=r"compression\.pattern"):
        wanda(weight, x.norm(dim=0), amount=None, pattern=(2, 3))  # 3 does not divide 512
    with pytest.raises(ValueError, match=r"compression\.amount"):
        sparsegpt(weight, hessian, amount=0.3, pattern=(2, 4))


# Scaling ---------------------------------------------------------------------------------------------------


def test_awq_scales_beat_rtn_on_inputs_with_outlier_channels() -> None:
    gen = torch.Generator().manual_seed(1)
    boost = torch.ones(256)
    boost[torch.randperm(256, generator=gen)[:6]] = 30.0  # a few outlier input channels

    def inputs(n: int) -> Tensor:
        return torch.randn(n, 256, generator=gen) * boost

    weights = [torch.randn(128, 256, generator=gen) / 16 for _ in range(3)]  # q, k, v sharing one input
    scales = awq_scales(weights, inputs(512), bits=3, group_size=64, symmetric=False)
    held_out = inputs(1024)
    for w in weights:
        linear = nn.Linear(256, 128, bias=False)
        with torch.no_grad():
            linear.weight.copy_(w)
        inverse = apply_input_scales(linear, scales)
        # Exact rewrite before quantization: (x / s) (W diag(s))^T == x W^T.
        torch.testing.assert_close(linear(held_out * inverse), held_out @ w.T, rtol=1e-4, atol=1e-3)
        awq = rtn(linear.weight, bits=3, group_size=64, symmetric=False).dequantize() * inverse  # 1/s folded back
        plain = rtn(w, bits=3, group_size=64, symmetric=False).dequantize()
        assert output_error(held_out, w, awq) < 0.8 * output_error(held_out, w, plain)


def test_smoothquant_scales_follow_the_formula() -> None:
    act = torch.rand(32) * 10 + 0.1
    weights = [torch.randn(16, 32), torch.randn(8, 32)]
    w_max = torch.cat(weights).abs().amax(dim=0)
    for alpha in (0.5, 0.8):
        expected = act.pow(alpha) / w_max.pow(1 - alpha)
        torch.testing.assert_close(smoothquant_scales(act, weights, alpha), expected)
    with pytest.raises(ValueError, match=r"compression\.alpha"):
        smoothquant_scales(act, weights, 1.5)


# Low rank --------------------------------------------------------------------------------------------------


def test_lowrank_is_the_truncated_svd_and_energy_picks_the_rank() -> None:
    gen = torch.Generator().manual_seed(2)
    u, _ = torch.linalg.qr(torch.randn(48, 48, dtype=torch.float64, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64, generator=gen))
    s = torch.tensor([2.0**-k for k in range(32)], dtype=torch.float64)
    weight = (u[:, :32] * s) @ v.T
    a, b = lowrank(weight.float(), rank=5)
    truncated = (u[:, :5] * s[:5]) @ v[:, :5].T
    torch.testing.assert_close(a.double() @ b.double(), truncated, atol=1e-6, rtol=0)
    power = s.square().cumsum(0) / s.square().sum()
    for r in (1, 2, 4):
        assert lowrank(weight, energy=float(power[r - 1]))[0].shape[1] == r  # exactly reached: r
        assert lowrank(weight, energy=float(power[r - 1]) + 1e-6)[0].shape[1] == r + 1
    assert lowrank(weight, energy=1.0)[0].shape[1] <= 32
    for kwargs, setting in [({"rank": 0}, "rank"), ({"rank": 33}, "rank"), ({"energy": 0.0}, "energy")]:
        with pytest.raises(ValueError, match=rf"compression\.{setting}"):
            lowrank(weight, **kwargs)  # type: ignore[arg-type]


def test_lowrank_linear_computes_a_times_b_plus_bias() -> None:
    linear = nn.Linear(20, 12)
    layer = LowRankLinear.from_linear(linear, rank=4)
    a, b = lowrank(linear.weight, rank=4)
    x = torch.randn(7, 20)
    torch.testing.assert_close(layer(x), x @ b.T @ a.T + linear.bias, rtol=1e-5, atol=1e-5)
    assert (layer.in_features, layer.out_features, layer.rank) == (20, 12, 4)
    full = LowRankLinear.from_linear(linear, rank=12)
    torch.testing.assert_close(full(x), linear(x), rtol=1e-4, atol=1e-5)


# Calibration -----------------------------------------------------------------------------------------------


def test_linear_stats_accumulate_over_batches() -> None:
    x = torch.randn(3, 50, 6)
    stats = LinearStats(6, dtype=torch.float64, sample_rows=40)
    for chunk in x:
        stats.add(chunk)
    rows = x.reshape(-1, 6).double()
    torch.testing.assert_close(stats.hessian, 2 * rows.T @ rows / 150)
    torch.testing.assert_close(stats.input_norm, rows.norm(dim=0))
    torch.testing.assert_close(stats.absmax, rows.abs().amax(dim=0))
    sample = stats.sample
    assert sample.shape == (40, 6)
    assert all(bool((row == rows).all(dim=1).any()) for row in sample)  # real rows, each once
    assert len({tuple(r.tolist()) for r in sample}) == 40


class _Classifier(nn.Module):
    """A Linear stem, a 2-layer Transformer encoder (batch first) and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(12, 32)
        block = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 5)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        return self.head(self.encoder(self.stem(x), src_key_padding_mask=padding_mask).mean(dim=1))


def _rtn_process(bits: int, calls: list[tuple[str, LinearStats]]) -> Callable[[str, nn.Linear, LinearStats], None]:
    @torch.no_grad()
    def process(name: str, linear: nn.Linear, stats: LinearStats) -> None:
        calls.append((name, stats))
        linear.weight.copy_(rtn(linear.weight, bits=bits, group_size=-1, symmetric=False).dequantize())

    return process


def _input_hessian(model: nn.Module, linear: nn.Module, batches: list[dict[str, Tensor]]) -> Tensor:
    """``2/n X^T X`` of the inputs ``linear`` receives when ``model`` runs on ``batches``."""
    rows: list[Tensor] = []
    handle = linear.register_forward_pre_hook(lambda module, args: rows.append(args[0].reshape(-1, args[0].shape[-1])))
    with torch.no_grad():
        for batch in batches:
            model(**batch)
    handle.remove()
    x = torch.cat(rows)
    return 2 * x.T @ x / len(x)


def _relative(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_calibrate_transformer_encoder_block_by_block() -> None:
    torch.manual_seed(0)
    model = _Classifier().train()
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[:, 7:] = True
    batches = [{"x": torch.randn(4, 10, 12), "padding_mask": mask} for _ in range(3)]
    path, blocks = sequential_blocks(model) or ("", nn.ModuleList())
    assert path == "encoder.layers" and len(blocks) == 2
    model.eval()
    with torch.no_grad():
        reference = torch.cat([model(**b) for b in batches])
    model.train()

    calls: list[tuple[str, LinearStats]] = []
    done = calibrate_and_apply(model, batches, targets=lambda name, linear: True, process=_rtn_process(8, calls))
    block_layers = [f"encoder.layers.{i}.{n}" for i in range(2) for n in ("self_attn.out_proj", "linear1", "linear2")]
    assert done == [name for name, _ in calls] == ["stem", *block_layers, "head"]
    assert [s.count for _, s in calls] == [120] * 7 + [12]  # tokens per layer; the head sees pooled rows
    assert model.training  # modes restored
    model.eval()
    with torch.no_grad():
        assert _relative(torch.cat([model(**b) for b in batches]), reference) < 0.02


def test_encoder_block_two_is_calibrated_on_the_processed_block_one() -> None:
    torch.manual_seed(1)
    model = _Classifier().eval()
    batches = [{"x": torch.randn(4, 10, 12)} for _ in range(2)]
    probe = model.encoder.layers[1].linear1  # its input depends only on block 1's input (out_proj is left alone)
    original = _input_hessian(model, probe, batches)
    calls: list[tuple[str, LinearStats]] = []
    calibrate_and_apply(
        model, batches, targets=lambda name, linear: "out_proj" not in name, process=_rtn_process(2, calls)
    )
    during = dict(calls)["encoder.layers.1.linear1"].hessian
    # = the inputs that the processed stem and block 0 produce, not the original ones.
    torch.testing.assert_close(during, _input_hessian(model, probe, batches), rtol=1e-4, atol=1e-4)
    assert _relative(during, original) > 0.05


def test_calibrate_without_a_stack_and_without_sequential() -> None:
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    assert sequential_blocks(mlp) is None
    calls: list[tuple[str, LinearStats]] = []
    done = calibrate_and_apply(
        mlp, [torch.randn(5, 8), torch.randn(3, 8)], targets=lambda n, m: True, process=_rtn_process(8, calls)
    )
    assert done == ["0", "2"] and [s.count for _, s in calls] == [8, 8]
    model = _Classifier()
    done = calibrate_and_apply(
        model,
        [torch.randn(2, 6, 12)],
        targets=lambda n, m: "linear" in n,
        process=_rtn_process(8, []),
        sequential=False,
    )
    assert done == [f"encoder.layers.{i}.linear{j}" for i in range(2) for j in (1, 2)]


class _Rescaled(nn.Module):
    """Blocks with an operation between them: block k+1 does not see block k's output tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(3))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = 2 * block(x)
        return x


class _Experts(nn.Module):
    """Two blocks, each with a longer list of four parallel experts (small MLPs)."""

    def __init__(self) -> None:
        super().__init__()
        experts = [nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(4)) for _ in range(2)]
        self.layers = nn.ModuleList(nn.ModuleDict({"experts": e}) for e in experts)


def test_sequential_blocks_prefers_the_outer_stack() -> None:
    found = sequential_blocks(_Experts())
    assert found is not None and found[0] == "layers"


def test_calibrate_falls_back_to_one_pass_when_blocks_do_not_chain() -> None:
    model = _Rescaled()
    assert sequential_blocks(model) is not None
    calls: list[tuple[str, LinearStats]] = []
    with pytest.warns(RuntimeWarning, match="one pass"):
        done = calibrate_and_apply(
            model, [torch.randn(4, 8)], targets=lambda n, m: True, process=_rtn_process(8, calls)
        )
    assert done == ["blocks.0.0", "blocks.1.0", "blocks.2.0"]


@pytest.fixture
def tiny_llama() -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
    )
    return transformers.LlamaForCausalLM(config).eval()


def test_calibrate_hugging_face_llama(tiny_llama: nn.Module) -> None:
    model = tiny_llama
    path, blocks = sequential_blocks(model) or ("", nn.ModuleList())
    assert path == "model.layers" and len(blocks) == 2
    gen = torch.Generator().manual_seed(3)
    batches = [{"input_ids": torch.randint(0, 256, (2, 16), generator=gen)} for _ in range(2)]
    with torch.no_grad():
        reference = torch.cat([model(**b).logits for b in batches])
    probe = model.get_submodule("model.layers.1.self_attn.q_proj")
    original = _input_hessian(model, probe, batches)
    calls: list[tuple[str, LinearStats]] = []
    done = calibrate_and_apply(
        model, batches, targets=lambda name, linear: name != "lm_head", process=_rtn_process(8, calls)
    )
    projections = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    expected = [
        f"model.layers.{i}.{n}"
        for i in range(2)
        for n in [*projections, "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    ]
    assert done == [name for name, _ in calls] == expected
    stats = dict(calls)
    assert all(s.count == 64 for s in stats.values())
    # Layers fed the same tensor share their statistics (computed once).
    assert stats["model.layers.0.self_attn.q_proj"] is stats["model.layers.0.self_attn.v_proj"]
    assert stats["model.layers.0.mlp.gate_proj"] is stats["model.layers.0.mlp.up_proj"]
    assert stats["model.layers.0.self_attn.o_proj"] is not stats["model.layers.0.self_attn.q_proj"]
    with torch.no_grad():
        assert _relative(torch.cat([model(**b).logits for b in batches]), reference) < 0.02
    # Block 1 was calibrated on the outputs of the processed block 0.
    during = stats["model.layers.1.self_attn.q_proj"].hessian
    torch.testing.assert_close(during, _input_hessian(model, probe, batches), rtol=1e-4, atol=1e-5)
    assert _relative(during, original) > 1e-3


def test_sparsegpt_through_calibration_keeps_the_pattern(tiny_llama: nn.Module) -> None:
    batches = [{"input_ids": torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(4))}]

    @torch.no_grad()
    def process(name: str, linear: nn.Linear, stats: LinearStats) -> None:
        linear.weight.copy_(sparsegpt(linear.weight, stats.hessian, amount=None, pattern=(2, 4)))

    done = calibrate_and_apply(tiny_llama, batches, targets=lambda name, linear: "mlp" in name, process=process)
    assert len(done) == 6
    for name in done:
        linear = tiny_llama.get_submodule(name)
        assert isinstance(linear, nn.Linear)
        weight = linear.weight
        assert ((weight.reshape(-1, 4) != 0).sum(dim=1) == 2).all()
