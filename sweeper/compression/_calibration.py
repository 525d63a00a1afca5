"""Calibration statistics of every ``nn.Linear`` of a model, and the block-by-block scheme of GPTQ/SparseGPT.

:class:`LinearStats` accumulates, from the inputs a Linear receives, what the post-training methods need:
the Hessian ``H = 2/n * sum x x^T`` of the layer-wise least-squares objective (GPTQ, SparseGPT), the
per-input-channel squared L2 norms (Wanda), the per-channel max ``|x|`` (SmoothQuant) and a seeded uniform
sample of input rows (AWQ's scale search). Inputs are flattened to ``(-1, in_features)``: ``n`` counts tokens.

:func:`calibrate_and_apply` runs a ``process(name, linear, stats)`` callback on every targeted Linear
(which replaces the weight in place), feeding it statistics of the inputs the layer sees once the layers
before it have been processed: the "sequential" scheme of the GPTQ and SparseGPT reference code
(IST-DASLab/gptq ``llama.py``: ``Catcher``, then layer by layer). When the model has a stack of repeated
blocks (:func:`sequential_blocks`):

1. The inputs of the first block (positional and keyword arguments: attention masks, position ids,
   rotary embeddings of Hugging Face models) are captured by a pre-hook that stops the forward pass.
   Targeted Linear layers that run before the stack (an input projection) are processed first, from the
   same pass, and the capture is repeated.
2. For each block: its Linear layers' statistics are collected over all calibration inputs, ``process`` is
   called for each, and the block is run again with the processed weights; its outputs become the next
   block's inputs. Only one block's inputs are held (plus one batch's activations inside a block).
   Within a block all layers see the block's inputs as processed so far (the reference's default; its
   ``--true-sequential`` option, re-collecting after q/k/v, after o, ... is not done).
3. Targeted layers after the stack (a classification head, ``lm_head``) are processed after one more
   pass through the whole (processed) model.

Without a stack (an MLP, a CNN), with ``sequential=False``, or when a check pass on the first batch shows
that the blocks do not feed each other directly (each block's hidden-state input must be the very tensor
the previous block returned), one pass with hooks over the whole model collects everything and each layer
is then processed.

Details that make this work on any model:

* Linear layers fed the very same tensor (q/k/v projections, gate/up of a gated MLP) share one
  :class:`LinearStats` (computed once); ``process`` must not modify it.
* ``nn.MultiheadAttention`` calls its ``out_proj`` through the functional API, so forward hooks on it never
  run; while statistics are collected, the attention runs with an identity output projection and the real
  ``out_proj`` module is applied to its result (the same numbers). Its packed ``in_proj_weight`` is not an
  ``nn.Linear`` and is left alone.
* PyTorch's fused Transformer fast path (``torch.backends.mha``) bypasses the Linear modules; it is off
  while this runs. The model is in eval mode (dropout off) and, for Hugging Face models, ``use_cache`` is
  off and cache arguments are dropped from the captured block inputs, so each block runs statelessly.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LinearStats", "calibrate_and_apply", "sequential_blocks"]

_CACHE_KWARGS = ("cache", "past_key_value", "past_key_values", "layer_past")


class LinearStats:
    """Running statistics of the inputs of one Linear layer.

    Args:
        in_features: the layer's input width.
        hessian: accumulate ``x^T x`` (``in_features**2`` numbers); off when only norms are needed.
        dtype: float type of the accumulators (float32 as the reference, or float64).
        sample_rows: at most this many input rows are kept, a uniform sample without replacement of all
            rows seen (0: none).
        seed: seed of that sample.

    Example:
        >>> stats = LinearStats(3, sample_rows=2)
        >>> stats.add(torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, -4.0]]))
        >>> stats.count, stats.hessian[0].tolist(), stats.input_norm.tolist(), stats.absmax.tolist()
        (2, [10.0, 0.0, -10.0], [3.1622776985168457, 0.0, 4.4721360206604], [3.0, 0.0, 4.0])
        >>> stats.sample.shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        in_features: int,
        *,
        hessian: bool = True,
        dtype: torch.dtype = torch.float32,
        sample_rows: int = 512,
        seed: int = 0,
    ) -> None:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype={dtype}: the statistics accumulate in float32 or float64")
        self.in_features = in_features
        self.dtype = dtype
        self.sample_rows = max(0, int(sample_rows))
        self.count = 0
        self._track_hessian = hessian
        self._xtx: Tensor | None = None
        self._sq: Tensor | None = None
        self._absmax: Tensor | None = None
        self._sample: Tensor | None = None
        self._keys: Tensor | None = None
        self._generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def add(self, x: Tensor) -> None:
        """Accumulate a batch of inputs, any shape ``(..., in_features)`` (a nested tensor too)."""
        if x.is_nested:
            x = torch.cat([t.reshape(-1, self.in_features) for t in x.unbind()])
        if x.shape[-1] != self.in_features:
            raise ValueError(f"an input of width {x.shape[-1]} reached statistics of width {self.in_features}")
        rows = x.detach().reshape(-1, self.in_features).to(self.dtype)
        n = rows.shape[0]
        if n == 0:
            return
        if self._sq is None:
            zeros = functools.partial(torch.zeros, dtype=self.dtype, device=rows.device)
            self._sq, self._absmax = zeros(self.in_features), zeros(self.in_features)
            if self._track_hessian:
                self._xtx = zeros((self.in_features, self.in_features))
        assert self._sq is not None and self._absmax is not None
        if self._xtx is not None:
            self._xtx.addmm_(rows.T, rows)
        self._sq.add_(rows.square().sum(dim=0))
        torch.maximum(self._absmax, rows.abs().amax(dim=0), out=self._absmax)
        if self.sample_rows:
            self._add_sample(rows)
        self.count += n

    def _add_sample(self, rows: Tensor) -> None:
        # Bottom-k sampling: every row draws a uniform key and the rows with the smallest keys are kept,
        # a uniform sample without replacement of all rows seen, whatever the batch sizes.
        keys = torch.rand(rows.shape[0], generator=self._generator).to(rows.device)
        if keys.numel() > self.sample_rows:
            keys, idx = torch.topk(keys, self.sample_rows, largest=False)
            rows = rows[idx]
        if self._keys is not None and self._sample is not None:
            keys, rows = torch.cat([self._keys, keys]), torch.cat([self._sample, rows])
            if keys.numel() > self.sample_rows:
                keys, idx = torch.topk(keys, self.sample_rows, largest=False)
                rows = rows[idx]
        self._keys, self._sample = keys, rows.clone()

    def _seen(self) -> None:
        if self.count == 0:
            raise ValueError("no inputs were recorded for this layer")

    def _copy(self, tensor: Tensor | None) -> Tensor:
        """A copy of an accumulator, once inputs were recorded."""
        self._seen()
        assert tensor is not None
        return tensor.clone()

    @property
    def hessian(self) -> Tensor:
        """``2/n * sum x x^T`` over the ``n`` input rows (a new tensor), ``(in_features, in_features)``."""
        self._seen()
        if self._xtx is None:
            raise ValueError("these statistics were collected without the Hessian (hessian=False)")
        return self._xtx * (2.0 / self.count)

    @property
    def sq_norm(self) -> Tensor:
        """Per-input-channel sum of squares ``sum_t x_tj^2``, ``(in_features,)``."""
        return self._copy(self._sq)

    @property
    def input_norm(self) -> Tensor:
        """Per-input-channel L2 norm ``||X_j||_2`` over all rows (Wanda's), ``(in_features,)``."""
        return self.sq_norm.sqrt()

    @property
    def absmax(self) -> Tensor:
        """Per-input-channel ``max |x_j|`` (SmoothQuant's), ``(in_features,)``."""
        return self._copy(self._absmax)

    @property
    def sample(self) -> Tensor:
        """The sampled input rows, ``(min(n, sample_rows), in_features)``."""
        self._seen()
        if self._sample is None:
            raise ValueError("these statistics keep no sample (sample_rows=0)")
        return self._sample


def sequential_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """Find the model's stack of repeated blocks: the longest ``nn.ModuleList`` of same-type modules with Linear layers.

    Lists inside such a list's modules (the experts of a mixture-of-experts block, the blocks inside the
    stages of a Swin Transformer) are not considered: the outer stack is the one the forward pass chains.

    Args:
        model: any module.

    Returns:
        ``(path, blocks)``: e.g. ``("model.layers", ...)`` for a Hugging Face Llama, ``("encoder.layers", ...)``
        for ``nn.TransformerEncoder`` at ``encoder``, ``("bert.encoder.layer", ...)`` for BERT; ``None`` without
        one. Of equally long lists the first is chosen (the encoder of an encoder-decoder model).

    Example:
        >>> layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
        >>> path, blocks = sequential_blocks(nn.Sequential(nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)))
        >>> path, len(blocks)
        ('0.layers', 3)
    """
    best: tuple[str, nn.ModuleList] | None = None
    inside: set[int] = set()  # modules within a stack already found
    for name, module in model.named_modules():
        if id(module) in inside or not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        kinds = {type(child) for child in module}
        if len(kinds) != 1 or isinstance(module[0], nn.Linear):
            continue
        if not any(isinstance(m, nn.Linear) for m in module[0].modules()):
            continue
        inside.update(id(m) for m in module.modules())
        if best is None or len(module) > len(best[1]):
            best = (name, module)
    return best


Process = Callable[[str, nn.Linear, LinearStats], None]
Targets = Callable[[str, nn.Linear], bool]


class _Stop(Exception):
    """Raised by the pre-hook on the first block, once its inputs are captured."""


class _NoHidden(TypeError):
    """A block's hidden states are not where this module looks for them."""


class _Collector:
    """Forward pre-hooks that feed :class:`LinearStats`, one per layer or shared by layers fed the same tensor."""

    def __init__(self, layers: Sequence[tuple[str, nn.Linear]], options: dict[str, Any]) -> None:
        self.layers = list(layers)
        self.options = options
        self.stats: dict[str, LinearStats] = {}
        self._batch: list[tuple[Tensor, LinearStats]] = []  # (input, stats) accumulated in this batch

    def hook(self, name: str, linear: nn.Linear) -> Callable[..., None]:
        def pre_hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            x = args[0] if args else kwargs.get("input")
            if not isinstance(x, Tensor):
                return
            stats = self.stats.get(name)
            if stats is None:
                stats = next((s for t, s in self._batch if t is x), None)
                if stats is None:
                    stats = LinearStats(linear.in_features, **self.options)
                self.stats[name] = stats
            if any(t is x and s is stats for t, s in self._batch):
                return  # a sibling layer already accumulated this very tensor
            stats.add(x)
            self._batch.append((x, stats))

        return pre_hook

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        handles = [lin.register_forward_pre_hook(self.hook(name, lin), with_kwargs=True) for name, lin in self.layers]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def next_batch(self) -> None:
        self._batch.clear()


@contextlib.contextmanager
def _hookable_attention(module: nn.Module) -> Iterator[None]:
    """Make ``out_proj`` of every ``nn.MultiheadAttention`` inside ``module`` run as a module (so hooks fire)."""
    patched = []
    for mha in module.modules():
        if isinstance(mha, nn.MultiheadAttention) and "forward" not in vars(mha):
            mha.forward = functools.partial(_attention_with_module_out_proj, mha)  # type: ignore[method-assign]
            patched.append(mha)
    try:
        yield
    finally:
        for mha in patched:
            del mha.forward


def _attention_with_module_out_proj(mha: nn.MultiheadAttention, *args: Any, **kwargs: Any) -> Any:
    out_proj = mha.out_proj
    saved = dict(out_proj._parameters)
    weight, bias = out_proj.weight, out_proj.bias
    # An identity projection makes the attention return the context vectors, which the real out_proj
    # then maps: the same result, through the module.
    identity = torch.eye(weight.shape[1], dtype=weight.dtype, device=weight.device)
    out_proj._parameters["weight"] = nn.Parameter(identity, requires_grad=False)
    if bias is not None:
        out_proj._parameters["bias"] = nn.Parameter(torch.zeros_like(bias), requires_grad=False)
    try:
        context, attn_weights = type(mha).forward(mha, *args, **kwargs)
    finally:
        out_proj._parameters.update(saved)
    return out_proj(context), attn_weights


@contextlib.contextmanager
def _calibration_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode, no autograd, no fused attention fast path, no Hugging Face KV cache; all restored after."""
    modes = [(m, m.training) for m in model.modules()]
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    if use_cache is not None:
        config.use_cache = False  # type: ignore[union-attr]
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        if use_cache is not None:
            config.use_cache = use_cache  # type: ignore[union-attr]
        for m, mode in modes:
            m.training = mode


def _run(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def _main_output(out: Any) -> Tensor:
    """The hidden states a block returns: the tensor itself, or the first item of a tuple/ModelOutput."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise _NoHidden(f"cannot find the hidden states in a block output of type {type(out).__name__}")


BlockInput = tuple[tuple[Any, ...], dict[str, Any]]


def _hidden_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Where a block's hidden states are: ``None`` for the first positional argument, else the keyword."""
    if args and isinstance(args[0], Tensor):
        return None
    if isinstance(kwargs.get("hidden_states"), Tensor):
        return "hidden_states"
    key = next((k for k, v in kwargs.items() if isinstance(v, Tensor)), None)
    if key is None:
        raise _NoHidden("cannot find the hidden states among a block's arguments")
    return key


def _with_hidden(inputs: BlockInput, hidden: Tensor) -> BlockInput:
    """The block inputs with the hidden states (the first positional tensor, else ``hidden_states``) replaced."""
    args, kwargs = inputs
    key = _hidden_key(args, kwargs)
    if key is None:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, key: hidden}


def _chained(model: nn.Module, blocks: nn.ModuleList, batch: Any) -> bool:
    """Whether one forward pass runs every block once, in order, each on the very tensor the previous returned.

    The block-by-block scheme feeds block k+1 the outputs of block k; anything between them (a rescaling,
    a pooling) or another order would make that wrong.
    """
    state: dict[str, Any] = {"next": 0, "last": None, "ok": True}

    def before(index: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            key = _hidden_key(args, kwargs)
            hidden = args[0] if key is None else kwargs[key]
            if index != state["next"] or (index and hidden is not state["last"]):
                state["ok"] = False

        return hook

    def after(index: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            state["last"], state["next"] = _main_output(output), index + 1
            if index + 1 == len(blocks):
                raise _Stop  # nothing after the stack is needed (a language model's logits: 800 MB for 16 windows)

        return hook

    handles = [b.register_forward_pre_hook(before(i), with_kwargs=True) for i, b in enumerate(blocks)]
    handles += [b.register_forward_hook(after(i), with_kwargs=True) for i, b in enumerate(blocks)]
    try:
        _run(model, batch)
    except _NoHidden:
        return False
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return bool(state["ok"]) and state["next"] == len(blocks)


def _capture(
    model: nn.Module, first: nn.Module, batches: Sequence[Any], collector: _Collector | None
) -> list[BlockInput]:
    """The inputs of ``first`` for every batch (the "Catcher"); hooks of ``collector`` run on the way."""
    captured: list[BlockInput] = []

    def catcher(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        kwargs = dict(kwargs)
        for key in _CACHE_KWARGS:
            if key in kwargs:
                kwargs[key] = None  # each block runs alone: no KV cache that would grow across runs
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        captured.append((tuple(args), kwargs))
        raise _Stop

    handle = first.register_forward_pre_hook(catcher, with_kwargs=True)
    context = collector.attached() if collector is not None else contextlib.nullcontext()
    try:
        with context, _hookable_attention(model):
            for batch in batches:
                if collector is not None:
                    collector.next_batch()
                with contextlib.suppress(_Stop):
                    _run(model, batch)
    finally:
        handle.remove()
    if len(captured) != len(batches):
        raise RuntimeError(f"the block stack ran for {len(captured)} of {len(batches)} calibration batches")
    return captured


def _process_all(
    layers: Sequence[tuple[str, nn.Linear]],
    collector: _Collector,
    process: Process,
    done: list[str],
    done_modules: set[nn.Module],
) -> list[tuple[str, nn.Linear]]:
    """Call ``process`` on every layer that saw inputs; return the layers that saw none."""
    unseen = []
    for name, linear in layers:
        if linear in done_modules:  # one module reachable under two names (shared between blocks)
            continue
        stats = collector.stats.get(name)
        if stats is None or stats.count == 0:
            unseen.append((name, linear))
            continue
        process(name, linear, stats)
        done.append(name)
        done_modules.add(linear)
    return unseen


def _linears(module: nn.Module, prefix: str, targets: Targets) -> list[tuple[str, nn.Linear]]:
    out = []
    for name, m in module.named_modules(prefix=prefix):
        if isinstance(m, nn.Linear) and targets(name, m):
            out.append((name, m))
    return out


def calibrate_and_apply(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    targets: Targets,
    process: Process,
    sequential: bool = True,
    hessian: bool = True,
    hessian_dtype: torch.dtype = torch.float32,
    sample_rows: int = 512,
    seed: int = 0,
) -> list[str]:
    """Collect input statistics of the targeted Linear layers and process each, block by block.

    Args:
        model: any model; its Linear weights are changed in place by ``process``. Its train/eval modes are
            restored afterwards.
        batches: model inputs, each a tensor (``model(x)``), a tuple (``model(*t)``) or a dict of keyword
            arguments (``model(**d)``, Hugging Face models). Read once into a list.
        targets: ``targets(name, linear)``, which Linear layers to process (``name`` as in
            ``model.named_modules()``).
        process: ``process(name, linear, stats)``, called exactly once for each targeted layer that received
            inputs; it changes ``linear`` in place and must leave ``stats`` unchanged.
        sequential: use the block-by-block scheme when :func:`sequential_blocks` finds a stack.
        hessian: collect Hessians (not needed by Wanda, SmoothQuant or AWQ).
        hessian_dtype: float32 or float64 accumulators.
        sample_rows: input rows kept per layer (AWQ), 0 for none.
        seed: seed of the row samples.

    Returns:
        The names of the processed layers, in the order they were processed. Targeted layers that never
        ran on the calibration data are not processed, with a warning.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> seen = {}
        >>> calibrate_and_apply(model, [torch.randn(16, 4)], targets=lambda name, lin: True,
        ...                     process=lambda name, lin, stats: seen.setdefault(name, stats.count))
        ['0', '2']
        >>> seen
        {'0': 16, '2': 16}
    """
    batch_list = list(batches)
    if not batch_list:
        raise ValueError("calibration needs at least one batch")
    options: dict[str, Any] = {"hessian": hessian, "dtype": hessian_dtype, "sample_rows": sample_rows, "seed": seed}
    done: list[str] = []
    done_modules: set[nn.Module] = set()
    found = sequential_blocks(model) if sequential else None
    with _calibration_mode(model):
        if found is not None and not _chained(model, found[1], batch_list[0]):
            warnings.warn(
                f"the blocks of {found[0]} do not feed each other directly: calibrating in one pass instead",
                RuntimeWarning,
                stacklevel=2,
            )
            found = None
        if found is None:
            layers = _linears(model, "", targets)
            collector = _one_pass(model, layers, batch_list, options)
            _warn_unseen(_process_all(layers, collector, process, done, done_modules))
            return done

        path, blocks = found
        in_stack = {id(m) for m in blocks.modules()}
        outside = [(n, m) for n, m in _linears(model, "", targets) if id(m) not in in_stack]

        # Layers before the stack run during the capture: process them, then capture again.
        collector = _Collector(outside, options)
        inputs = _capture(model, blocks[0], batch_list, collector if outside else None)
        if collector.stats:
            ahead = [(n, m) for n, m in outside if n in collector.stats]
            _process_all(ahead, collector, process, done, done_modules)
            inputs = _capture(model, blocks[0], batch_list, None)

        for index, block in enumerate(blocks):
            layers = _linears(block, f"{path}.{index}" if path else str(index), targets)
            if layers:
                collector = _Collector(layers, options)
                with collector.attached(), _hookable_attention(block):
                    for args, kwargs in inputs:
                        collector.next_batch()
                        block(*args, **kwargs)
                _warn_unseen(_process_all(layers, collector, process, done, done_modules))
                del collector
            if index + 1 < len(blocks):
                for i, (args, kwargs) in enumerate(inputs):
                    inputs[i] = _with_hidden((args, kwargs), _main_output(block(*args, **kwargs)))
        del inputs

        # Layers after the stack: one pass through the processed model.
        rest = [(n, m) for n, m in outside if n not in done]
        if rest:
            collector = _one_pass(model, rest, batch_list, options)
            _warn_unseen(_process_all(rest, collector, process, done, done_modules))
    return done


def _one_pass(
    model: nn.Module, layers: list[tuple[str, nn.Linear]], batch_list: list[Any], options: dict[str, Any]
) -> _Collector:
    """The statistics of ``layers`` over one pass of the whole model through the calibration batches."""
    collector = _Collector(layers, options)
    with collector.attached(), _hookable_attention(model):
        for batch in batch_list:
            collector.next_batch()
            _run(model, batch)
    return collector


def _warn_unseen(unseen: Sequence[tuple[str, nn.Linear]]) -> None:
    if unseen:
        names = ", ".join(name for name, _ in unseen)
        warnings.warn(f"not processed (no calibration input reached them): {names}", RuntimeWarning, stacklevel=3)
