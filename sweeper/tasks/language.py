"""Language modelling: next-token prediction on English prose the Python standard library ships.

The text is ``pydoc_data.topics`` (the help topics of ``help()``: 79 documents, about 465,000
characters of English technical prose, under the Python Software Foundation License, shipped with
every CPython). Whole documents go to the training (calibration), validation and test splits by a
seeded shuffle, so no document is split across them. Each split's documents are tokenized, joined
with the tokenizer's end-of-text token, and cut into windows of ``length + 1`` tokens: ``x`` is a
window's first ``length`` tokens, ``y`` the next token of each position. The score is perplexity
(lower is better) over every next token of the split; a unigram model of the training tokens is the
baseline. The training windows stream from a token file (:class:`sweeper.streams.TokenWindows`), the
validation and test windows are held in memory.

The tokenizer is the model's own (``tokenizer``: a ``save_pretrained`` directory or a ``.gguf`` file,
``pkg://...`` for one inside an installed package; ``experiment=llm`` hands it ``model.checkpoint``);
without one, a byte-level BPE of ``vocab_size`` tokens is trained on the training documents only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sweeper.cache import compute_once
from sweeper.data import Task
from sweeper.hf import CHECKPOINT_CACHE
from sweeper.streams import STREAM_CACHE, TokenWindows, write_npy

__all__ = ["SOURCE", "lm_text", "next_token_loss", "split_documents"]

SOURCE = "Python's pydoc_data.topics (the help topics of help(), English prose, Python Software Foundation License)"


def next_token_loss(logits: Tensor, _inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of every position's next token: a language model's training loss."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _documents() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[key].strip() for key in sorted(topics) if len(topics[key].strip()) > 200]


class _Tokenizer:
    """What the task needs of a tokenizer: ids of a text, the end-of-text id, the vocabulary size."""

    def __init__(self, encode: Any, eos: int, vocab: int) -> None:
        self.encode, self.eos, self.vocab = encode, eos, vocab


def _pretrained_tokenizer(location: str, cache_dir: str) -> _Tokenizer:
    from sweeper.hf import pretrained_tokenizer

    tokenizer = pretrained_tokenizer(location, cache_dir)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return _Tokenizer(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"], int(eos), len(tokenizer))


def _trained_tokenizer(texts: list[str], vocab_size: int) -> _Tokenizer:
    """A byte-level BPE of ``vocab_size`` tokens trained on ``texts`` (the training documents only)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=alphabet)
    tokenizer.train_from_iterator(texts, trainer)
    return _Tokenizer(lambda text: tokenizer.encode(text).ids, 0, tokenizer.get_vocab_size())


def _tokens(documents: list[str], tokenizer: _Tokenizer) -> list[int]:
    """The documents' tokens, each document followed by end-of-text."""
    ids: list[int] = []
    for text in documents:
        ids += [*tokenizer.encode(text), tokenizer.eos]
    return ids


def _windows(ids: list[int], length: int, limit: int | None) -> tuple[Tensor, Tensor]:
    """Tokens as windows of ``length``: inputs and next-token targets (as :class:`TokenWindows` cuts them)."""
    count = (len(ids) - 1) // length
    if limit is not None:
        count = min(count, limit)
    if count == 0:
        raise ValueError(f"data.length={length}: longer than a split's {len(ids)} tokens; lower it")
    tokens = torch.tensor(ids[: count * length + 1], dtype=torch.int64)
    return tokens[:-1].view(count, length), tokens[1:].view(count, length)


def _token_file(ids: list[int], vocab: int, stream_dir: str) -> Path:
    """``ids`` as a 1-D ``.npy`` in ``stream_dir``, named by its content (written once)."""
    tokens = np.asarray(ids, dtype=np.min_scalar_type(vocab - 1))
    name = f"tokens-{hashlib.sha256(tokens.tobytes() + str(tokens.dtype).encode()).hexdigest()[:24]}.npy"
    return compute_once(Path(stream_dir) / name, lambda tmp: write_npy(tmp, tokens.shape, tokens.dtype, [tokens]))


def split_documents(seed: int, val_fraction: float, test_fraction: float) -> tuple[list[str], list[str], list[str]]:
    """The documents of the training, validation and test splits: whole documents, shuffled by ``seed``."""
    documents = _documents()
    order = np.random.default_rng(seed).permutation(len(documents))
    n_test, n_val = max(1, round(len(order) * test_fraction)), max(1, round(len(order) * val_fraction))
    parts = (order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test])
    train, val, test = ([documents[i] for i in part] for part in parts)
    return train, val, test


def lm_text(
    *,
    seed: int,
    tokenizer: str | None = None,
    length: int = 128,
    vocab_size: int = 2000,
    eval_windows: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int | None = None,
    cache_dir: str = CHECKPOINT_CACHE,
    stream: bool = True,
    stream_workers: int = 2,
    stream_dir: str = STREAM_CACHE,
) -> Task:
    """Next-token prediction on ``pydoc_data.topics``, scored by perplexity (see the module docstring).

    Args:
        seed: shuffles the documents into the splits.
        tokenizer: the model's tokenizer (a directory or a ``.gguf`` file); None: a BPE trained here.
        length: tokens per window.
        vocab_size: the trained BPE's vocabulary (without a ``tokenizer``).
        eval_windows: at most this many windows in the validation and test splits (their first ones; None:
            all): what an evaluation costs; the training split keeps all its windows.
        val_fraction: share of the documents for validation.
        test_fraction: share of the documents for test.
        split_seed: shuffles the documents instead of ``seed`` (fixed, the seeds of a sweep vary only what
            else they draw: a post-training method's calibration windows, a fine-tuning's order).
        cache_dir: where a ``.gguf`` tokenizer is kept once converted (as the model's weights are).
        stream: the training windows stream from a token file in ``stream_dir`` (:class:`TokenWindows`, read by
            ``stream_workers`` DataLoader workers); false: they are held in memory.
        stream_workers: DataLoader worker processes reading the training windows.
        stream_dir: where the training tokens are written, once per content.
    """
    if not (isinstance(length, int) and length >= 8):
        raise ValueError(f"data.length={length}: must be an integer >= 8")
    if not (isinstance(vocab_size, int) and vocab_size >= 300):
        raise ValueError(f"data.vocab_size={vocab_size}: must be an integer >= 300 (256 bytes and some merges)")
    if eval_windows is not None and not (isinstance(eval_windows, int) and eval_windows >= 1):
        raise ValueError(f"data.eval_windows={eval_windows}: must be an integer >= 1 or null")
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 0.5:
            raise ValueError(f"data.{key}={value}: must be in (0, 0.5)")
    train, val, test = split_documents(seed if split_seed is None else split_seed, val_fraction, test_fraction)
    words = _pretrained_tokenizer(tokenizer, cache_dir) if tokenizer else _trained_tokenizer(train, vocab_size)
    ids = _tokens(train, words)
    (x_va, y_va), (x_te, y_te) = (_windows(_tokens(part, words), length, eval_windows) for part in (val, test))
    fields: dict[str, Any] = {
        "num_classes": words.vocab, "metrics": ("perplexity", "token_accuracy"), "baseline": "unigram",
        "source": SOURCE, "loss": next_token_loss,
    }  # fmt: skip
    if not stream:
        return Task("lm_text", *_windows(ids, length, None), x_va, y_va, x_te, y_te, **fields)
    _windows(ids, length, 1)  # a split too short for one window: the same error as in memory
    windows = TokenWindows(_token_file(ids, words.vocab, stream_dir), length)
    return Task.streamed(windows, x_va, y_va, x_te, y_te, name="lm_text", workers=stream_workers, **fields)
