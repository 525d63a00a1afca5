"""What ``compression=mixed`` chose for each layer, per configuration over its seeds, and the
per-layer sensitivity behind it, when the sweep has such runs."""

from __future__ import annotations

import pandas as pd

from sweeper.report import plots
from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Image, Section, Table
from sweeper.report.stats import score_label

__all__ = ["build"]


def build(inputs: ReportInputs) -> Section | None:
    """The bit width and sparsity per layer (None: no run chose per-layer settings); the sensitivity plots
    of each configuration's first run when ``inputs.read_table`` can read its ``sensitivity`` table."""
    ok = inputs.runs[inputs.runs["outcome"] == "ok"]
    columns = [c for c in ok.columns if c.startswith("layers.") and c.endswith(".bits") and ok[c].notna().any()]
    if not columns:
        return None
    rows = []
    for label, group in ok.groupby("config", sort=False):
        for column in columns:
            layer = column.removeprefix("layers.").removesuffix(".bits")
            bits, sparsity = group[column].dropna(), group.get(f"layers.{layer}.sparsity", pd.Series()).dropna()
            if len(bits):
                rows.append(
                    {
                        "configuration": label,
                        "layer": layer,
                        "bits (per seed)": " / ".join("float32" if b >= 32 else f"{b:.0f}" for b in bits),
                        "sparsity (per seed)": " / ".join(f"{v:g}" for v in sparsity),
                    }
                )
    text = (
        "`compression=mixed` gave each layer its own bit width and sparsity: from each trained model's "
        f"sensitivity (each layer alone at each setting, validation {score_label()}), the assignment that "
        "loses the least predicted score within the size budget (an exact knapsack), then fine-tuned. "
        "Each run's `sensitivity.csv` and `allocation.csv` are among its MLflow artifacts."
    )
    section = Section("Per-layer settings", [text, Table(pd.DataFrame(rows), "Bit width and sparsity per layer")])
    if inputs.read_table is None:
        return section
    labels = list(dict.fromkeys(row["configuration"] for row in rows))
    for k, label in enumerate(labels, start=1):
        first = ok[ok["config"] == label].sort_values("seed").iloc[0]
        table = inputs.read_table(str(first["run_id"]), "sensitivity")
        if table is not None:
            path = inputs.out / f"sensitivity-{k}.png"
            path.write_bytes(plots.plot_layer_sensitivity(table))
            caption = f"Per-layer sensitivity of `{label}` (seed {first['seed']}): each layer alone at each setting"
            section.blocks.append(Image(path, caption))
    return section
