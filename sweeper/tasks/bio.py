"""Bioinformatics: antimicrobial peptides against UniProt sequences (modlamp's AMPvsUniProt set)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sweeper.data import Task
from sweeper.tasks._files import packaged_file

__all__ = ["AMINO_ACIDS", "encode_sequences", "peptides"]

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # ids 1..20; 0 pads, 21 is any other residue
SOURCE = "AMPvsUniProt: 2,600 antimicrobial peptides vs 2,600 UniProt sequences, shipped by modlamp (BSD-3)"


def encode_sequences(sequences: list[str], length: int) -> np.ndarray:
    """Residue ids, right-padded with 0 (or cut) to ``length``.

    Example:
        >>> encode_sequences(["ACX", "W"], 4).tolist()
        [[1, 2, 21, 0], [19, 0, 0, 0]]
    """
    ids = {a: i + 1 for i, a in enumerate(AMINO_ACIDS)}
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        codes = [ids.get(a, len(AMINO_ACIDS) + 1) for a in sequence.strip().upper()[:length]]
        out[row, : len(codes)] = codes
    return out


def peptides(*, seed: int, max_length: int = 64, val_fraction: float = 0.15, test_fraction: float = 0.2) -> Task:
    """Is a peptide antimicrobial? 5,200 sequences as residue ids (vocabulary 22); AUC, baseline 3-mer logistic regression."""
    if not (isinstance(max_length, int) and max_length >= 8):
        raise ValueError(f"data.max_length={max_length}: must be an integer >= 8")
    path = packaged_file("modlamp", "data/AMPvsUniProt.csv", data="peptides")
    table = pd.read_csv(path, skiprows=1, header=None, names=["sequence", "label"], skipinitialspace=True)
    return Task.from_arrays(
        encode_sequences(table["sequence"].tolist(), max_length),
        table["label"].to_numpy(np.int64),
        seed=seed,
        name="peptides",
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        metrics=("auc", "macro_f1", "accuracy"),
        baseline="kmer_logreg",
        source=SOURCE,
    )
