"""Hugging Face ``transformers`` encoders as trial networks: built from a small config with random
weights (BERT-style), or loaded from a checkpoint directory of the user's; nothing is fetched from a hub.

The wrapper maps a batch of token ids (0 pads) to class logits, so the trial loop, every
compression method and the artifact reload drive it like any other ``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

__all__ = ["HFClassifier", "make_bert"]


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
    **config: Any,
) -> HFClassifier:
    """``transformers.BertForSequenceClassification`` over ``(L,)`` token ids in ``[0, vocab)``.

    ``checkpoint``: a local ``save_pretrained`` directory (``model.checkpoint``: its architecture and
    weights, a new head; the task tokenizes with its tokenizer); otherwise a randomly initialised BERT
    of this size. ``config``: other ``BertConfig`` keys.
    """
    if len(input_shape) != 1:
        raise ValueError(f"model=bert needs token ids shaped (L,); got {tuple(input_shape)}")
    length = int(input_shape[0])
    if checkpoint:
        return _pretrained(checkpoint, num_classes, length)
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
    return HFClassifier(BertForSequenceClassification(bert))
