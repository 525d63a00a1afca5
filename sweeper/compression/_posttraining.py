"""What the post-training methods on Linear layers share: which layers, the calibration data, the artifacts.

The methods large-language-model practitioners compare (``rtn``, ``gptq``, ``awq``, ``sparsegpt``,
``wanda``, ``magnitude``, ``lowrank``) act on the ``nn.Linear`` layers of any model, after training,
without retraining: every Linear but the one that produces the model's output (``keep_output``; the
``lm_head`` of a language model, the classifier of any other), narrowed by ``include`` / ``exclude``
module-name patterns. The calibrated ones read ``calibration_samples`` inputs of the training split,
layer by layer (:func:`sweeper.compression._calibration.calibrate_and_apply`: the block-by-block scheme of
GPTQ's reference code when the model has a stack of blocks).

Artifacts:

* ``lowbit``: each quantized Linear as its codes packed at ``bits`` bits (two 4-bit codes a byte), its
  group scales (float16), its zero points (packed, asymmetric grids only), GPTQ's column order when it
  has one, AWQ's per-input-channel scales, and the bitmask of zeros an earlier pruning stage left; the
  rest of the network dense. It is reloaded as float weights (no packed kernel runs: ``simulated``).
* pruned layers go to the ``sparse`` artifact (bitmask + kept values, :mod:`sweeper.compression._prune`):
  at 2:4 a bitmask takes the same bit per weight as two 2-bit indices per four.
"""

from __future__ import annotations

import fnmatch
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sweeper.artifact import ModelSpec, load_state, register_loader
from sweeper.compression._base import Compressed, CompressionContext, UnsupportedLayer
from sweeper.compression._calibration import LinearStats, calibrate_and_apply
from sweeper.compression._lowbit import LowBitWeight, pack_codes, unpack_codes
from sweeper.compression._storage import decode_state, encode_state, pack_bits, pack_tree, unpack_bits, unpack_tree

__all__ = ["LinearMethod", "calibration_batches", "check_positive", "linear_targets", "lowbit_compressed"]

Process = Callable[[str, nn.Linear, "LinearStats | None"], None]


def check_positive(value: object, key: str) -> int:
    """``value`` as an integer >= 1, else ``ValueError`` naming ``compression.<key>``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"compression.{key}={value!r}: must be an integer >= 1")
    return value


def output_layer(model: nn.Module, example: Tensor) -> nn.Module | None:
    """The Linear whose output the model returns (its logits), else the last Linear that ran; None without one.

    Outputs are watched through weak references: the layers' outputs are not kept alive (every Linear's
    output of a language model is hundreds of MB)."""
    ran: list[tuple[nn.Module, Callable[[], Any]]] = []

    def watch(module: nn.Module, _inputs: Any, out: Any) -> None:
        ran.append((module, weakref.ref(out) if isinstance(out, Tensor) else lambda: None))

    handles = [m.register_forward_hook(watch) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            output = model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    logits = getattr(output, "logits", output)
    return next((module for module, out in reversed(ran) if out() is logits), ran[-1][0] if ran else None)


def linear_targets(
    model: nn.Module,
    example: Tensor,
    *,
    method: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    keep_output: bool = True,
) -> dict[str, nn.Linear]:
    """The Linear layers a method acts on, by qualified name.

    Raises:
        ValueError: a pattern matches no module.
        UnsupportedLayer: the model has no Linear layer left to act on.
    """
    names = [name for name, _ in model.named_modules()]
    for key, patterns in (("include", include), ("exclude", exclude)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ValueError(f"compression.{key}: pattern {pattern!r} matches no module")
    kept = output_layer(model, example) if keep_output else None
    targets = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and module is not kept
        and (not include or any(fnmatch.fnmatchcase(name, p) for p in include))
        and not any(fnmatch.fnmatchcase(name, p) for p in exclude)
    }
    if not targets:
        why = "no nn.Linear layer" + (" besides its output layer (compression.keep_output=true)" if kept else "")
        raise UnsupportedLayer(method, "", model, f"{why} to act on")
    return targets


def calibration_batches(ctx: CompressionContext, samples: int, *, batch_size: int = 16) -> list[Tensor]:
    """``samples`` training inputs drawn by the trial's seed, in batches, on the trial's device.

    Raises:
        ValueError: more samples than the training split holds.
    """
    inputs = ctx.task.inputs("train")
    if samples > len(inputs):
        raise ValueError(
            f"compression.calibration_samples={samples}: the training split holds {len(inputs)}; "
            f"allowed: 1..{len(inputs)}"
        )
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(ctx.seed))[:samples]
    chosen = inputs[order.sort().values].to(ctx.device)
    return [chosen[i : i + batch_size] for i in range(0, samples, batch_size)]


class LinearMethod:
    """The shared core of a post-training method on Linear layers; a method defines :meth:`process`.

    Args:
        calibration_samples: training inputs the statistics are collected on (ignored by calibration-free
            methods).
        include: module-name patterns to act on (fnmatch; empty: every Linear).
        exclude: module-name patterns to leave alone.
        keep_output: leave the layer that produces the model's output (``lm_head``, the classifier) alone.
    """

    name = "linear"  # the option's name, in messages
    needs_calibration = True  # False: process() gets no statistics and no data is read
    needs_hessian = True

    def __init__(
        self,
        *,
        calibration_samples: int = 128,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        keep_output: bool = True,
    ) -> None:
        self.calibration_samples = check_positive(calibration_samples, "calibration_samples")
        if isinstance(include, str) or isinstance(exclude, str):
            raise ValueError("compression.include / compression.exclude: must be lists of module-name patterns")
        self.include, self.exclude, self.keep_output = list(include), list(exclude), bool(keep_output)

    def targets(self, model: nn.Module, ctx: CompressionContext) -> dict[str, nn.Linear]:
        example = ctx.task.inputs("train")[:2].to(next(model.parameters()).device)
        return linear_targets(
            model, example, method=self.name, include=self.include, exclude=self.exclude, keep_output=self.keep_output
        )

    def check(self, model: nn.Module, ctx: CompressionContext) -> None:
        """Before training: the layers exist, the calibration data is there, the method's own settings fit."""
        targets = self.targets(model, ctx)
        if self.needs_calibration:
            calibration_batches(ctx, self.calibration_samples)
        for name, linear in targets.items():
            self.check_layer(name, linear)

    def check_layer(self, name: str, linear: nn.Linear) -> None:
        """A setting that does not fit one layer (a group size that does not divide its width): ``ValueError``."""

    def process(self, name: str, linear: nn.Linear, stats: LinearStats | None) -> None:
        """Change ``linear`` in place from its calibration statistics."""
        raise NotImplementedError

    def run(self, model: nn.Module, ctx: CompressionContext) -> list[str]:
        """Process every target layer (calibrated block by block when the method needs data); their names."""
        model.eval()
        targets = self.targets(model, ctx)
        if not self.needs_calibration:
            for name, linear in targets.items():
                self.process(name, linear, None)
            return list(targets)
        chosen = {id(m) for m in targets.values()}
        return calibrate_and_apply(
            model,
            calibration_batches(ctx, self.calibration_samples),
            targets=lambda _name, linear: id(linear) in chosen,
            process=self.process,
            hessian=self.needs_hessian,
            seed=ctx.seed,
        )


def _linear(model: nn.Module, name: str) -> nn.Linear:
    layer = model.get_submodule(name)
    assert isinstance(layer, nn.Linear)
    return layer


# ---- the lowbit artifact -------------------------------------------------------------------------------


def _encode(q: LowBitWeight, input_scales: Tensor | None, keep: Tensor | None) -> dict[str, Any]:
    layer: dict[str, Any] = {
        "codes": pack_codes(q.codes, q.bits),
        "shape": list(q.shape),
        "bits": q.bits,
        "group_size": q.group_size,
        "symmetric": q.symmetric,
        "scales": q.scales.to(torch.float16),
    }
    if not q.symmetric:
        layer["zeros"] = pack_codes(q.zeros, q.bits)
        layer["zeros_shape"] = list(q.zeros.shape)
    if q.perm is not None:
        layer["perm"] = q.perm.to(torch.int16 if q.perm.numel() <= 2**15 else torch.int32)
    if input_scales is not None:
        layer["input_scales"] = input_scales.to(torch.float16)
    if keep is not None:
        layer["keep"] = pack_bits(keep.flatten().to(torch.int64), 1)
    return layer


def _weight(layer: dict[str, Any]) -> Tensor:
    """The float weight a stored layer stands for."""
    out, cols = layer["shape"]
    bits, symmetric = layer["bits"], layer["symmetric"]
    codes = unpack_codes(layer["codes"], bits, out * cols).view(out, cols)
    scales = layer["scales"].float()
    if symmetric:
        zeros = torch.full(scales.shape, 2 ** (bits - 1), dtype=torch.uint8)
    else:
        zeros = unpack_codes(layer["zeros"], bits, scales.numel()).view(*layer["zeros_shape"])
    perm = layer.get("perm")
    q = LowBitWeight(codes, scales, zeros, bits, layer["group_size"], symmetric, None if perm is None else perm.long())
    weight = q.dequantize()
    if "input_scales" in layer:
        weight = weight / layer["input_scales"].float()[None, :]
    if "keep" in layer:
        weight = weight * unpack_bits(layer["keep"], 1, out * cols).view(out, cols).to(weight.dtype)
    return weight


def lowbit_compressed(
    model: nn.Module,
    quantized: dict[str, tuple[LowBitWeight, Tensor | None, Tensor | None]],
    *,
    metrics: dict[str, float],
) -> Compressed:
    """The ``lowbit`` artifact of ``model`` whose layers ``quantized`` names (``LowBitWeight``, AWQ's input
    scales, an earlier stage's keep-mask); each such layer's weight is set to exactly what the artifact
    stores (float16 scales), so the reloaded network computes what the in-memory one does."""
    layers = {name: _encode(q, scales, keep) for name, (q, scales, keep) in quantized.items()}
    state = model.state_dict()
    with torch.no_grad():
        for name, layer in layers.items():
            weight = _linear(model, name).weight
            weight.copy_(_weight(layer).to(weight.dtype))
    rest = {k: v for k, v in state.items() if k.removesuffix(".weight") not in layers or not k.endswith(".weight")}
    payload = pack_tree({"rest": encode_state(rest), "layers": layers})
    return Compressed(model, "lowbit", payload, latency_kind="simulated", metrics=metrics)


@register_loader("lowbit")
def _load_lowbit(spec: ModelSpec, payload: dict[str, Any]) -> nn.Module:
    tree = unpack_tree(payload)
    model = spec.build()
    state = decode_state(tree["rest"])
    for name, layer in tree["layers"].items():
        state[f"{name}.weight"] = _weight(layer)
    return load_state(model, state)


# ---- the two kinds of method: low-bit weights, pruned weights ----------------------------------------------


def existing_keep(weight: Tensor) -> Tensor | None:
    """The nonzero positions of a weight an earlier stage pruned (over 1 % zeros), kept zero after quantization."""
    keep = weight.detach() != 0
    return keep.cpu() if float((~keep).float().mean()) > 0.01 else None


class LowBitMethod(LinearMethod):
    """A weight-only quantizer of Linear layers (``rtn``, ``gptq``, ``awq``): :meth:`quantize` per layer.

    Args:
        bits: 2..8 bits per weight.
        group_size: input columns sharing a scale and zero point; -1: one per output channel. It must divide
            every target layer's width (checked before training).
        symmetric: codes centred on zero (no zero points stored) instead of a fitted zero point per group.
        **common: :class:`LinearMethod`'s.
    """

    def __init__(self, *, bits: int = 4, group_size: int = -1, symmetric: bool = False, **common: Any) -> None:
        super().__init__(**common)
        from sweeper.compression._lowbit import check_bits

        self.bits, self.group_size, self.symmetric = check_bits(bits), group_size, bool(symmetric)
        self._quantized: dict[str, tuple[LowBitWeight, Tensor | None, Tensor | None]] = {}

    @property
    def grid(self) -> dict[str, Any]:
        """The quantization grid's settings, as the low-bit functions take them."""
        return {"bits": self.bits, "group_size": self.group_size, "symmetric": self.symmetric}

    def check_layer(self, name: str, linear: nn.Linear) -> None:
        from sweeper.compression._lowbit import resolve_group_size

        try:
            resolve_group_size(self.group_size, linear.in_features)
        except ValueError as exc:
            raise ValueError(f"{exc} (layer {name})") from exc

    def quantize(self, weight: Tensor, stats: LinearStats | None) -> tuple[LowBitWeight, Tensor | None]:
        """The layer's codes, and the per-input-channel scales its input is divided by (AWQ), if any."""
        raise NotImplementedError

    def process(self, name: str, linear: nn.Linear, stats: LinearStats | None) -> None:
        keep = existing_keep(linear.weight)
        q, input_scales = self.quantize(linear.weight.detach().float(), stats)
        self._quantized[name] = (q, input_scales, keep)

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Quantize every target layer; write the ``lowbit`` artifact."""
        self._quantized = {}
        self.run(model, ctx)
        quantized, self._quantized = self._quantized, {}
        weights = sum(q.codes.numel() for q, _, _ in quantized.values())
        metrics = {"bits": float(self.bits), "quantized_share": weights / sum(p.numel() for p in model.parameters())}
        return lowbit_compressed(model.cpu(), quantized, metrics=metrics)


def parse_pattern(pattern: object) -> tuple[int, int] | None:
    """``"2:4"`` (n kept of every m input columns) as ``(2, 4)``; None stays None.

    Example:
        >>> parse_pattern("2:4"), parse_pattern(None)
        ((2, 4), None)
    """
    if pattern is None:
        return None
    try:
        n, m = (int(part) for part in str(pattern).split(":"))
    except ValueError:
        raise ValueError(f"compression.pattern={pattern!r}: must be n:m (n kept of every m), e.g. 2:4") from None
    return n, m


class PruneMethod(LinearMethod):
    """A one-shot pruner of Linear layers (``sparsegpt``, ``wanda``, ``magnitude``): :meth:`prune` per layer.

    Args:
        amount: share of each layer's weights to zero, per output row, in [0, 1).
        pattern: ``n:m`` semi-structured sparsity (``2:4``: two kept of every four input columns); it decides
            the share, ``amount`` is then ignored.
        **common: :class:`LinearMethod`'s.
    """

    def __init__(self, *, amount: float | None = 0.5, pattern: str | None = None, **common: Any) -> None:
        super().__init__(**common)
        from sweeper.compression._lowbit import resolve_sparsity

        self.pattern = parse_pattern(pattern)
        if (
            self.pattern is not None
            and amount is not None
            and abs(amount - (1 - self.pattern[0] / self.pattern[1])) > 1e-9
        ):
            amount = None  # the pattern decides: its default amount is not a request
        self.amount, _ = resolve_sparsity(amount, self.pattern, self.pattern[1] if self.pattern else 1)

    def check_layer(self, name: str, linear: nn.Linear) -> None:
        from sweeper.compression._lowbit import resolve_sparsity

        try:
            resolve_sparsity(None if self.pattern else self.amount, self.pattern, linear.in_features)
        except ValueError as exc:
            raise ValueError(f"{exc} (layer {name}, in_features {linear.in_features})") from exc

    def prune(self, weight: Tensor, stats: LinearStats | None) -> Tensor:
        """The layer's pruned weight."""
        raise NotImplementedError

    def process(self, name: str, linear: nn.Linear, stats: LinearStats | None) -> None:
        pruned = self.prune(linear.weight.detach().float(), stats)
        with torch.no_grad():
            linear.weight.copy_(pruned.to(linear.weight.dtype))

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        """Prune every target layer; write the ``sparse`` artifact."""
        from sweeper.compression._prune import sparse_compressed

        names = self.run(model, ctx)
        pruned = [_linear(model, name).weight for name in names]
        compressed = sparse_compressed(model.cpu())
        zeros = sum(int((w == 0).sum()) for w in pruned)
        compressed.metrics["sparsity"] = zeros / max(sum(w.numel() for w in pruned), 1)
        if self.pattern is not None:
            compressed.tags["pattern"] = f"{self.pattern[0]}:{self.pattern[1]}"
        return compressed
