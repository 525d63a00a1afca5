"""The Pareto front of test score against size and latency, when configurations differ in size or speed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sweeper.report import plots
from sweeper.report.inputs import ReportInputs
from sweeper.report.pareto import dominators, hypervolume, pareto_mask
from sweeper.report.render import Image, Section, Table
from sweeper.report.stats import score_label

__all__ = ["build", "objectives"]


def objectives(ranked: pd.DataFrame) -> np.ndarray:
    """Minimized objectives per configuration: (-score, size KiB, latency ms)."""
    return np.column_stack([-ranked["score_mean"], ranked["size_bytes"] / 1024, ranked["latency_ms"]])


def build(inputs: ReportInputs) -> Section | None:
    """The front, its hypervolume, what dominates what, and the two plots.

    None when fewer than two configurations finished or all deploy networks of one size and speed
    (then the ranking alone orders them).
    """
    ranked = inputs.ranked
    if len(ranked) < 2 or (ranked["size_bytes"].nunique() < 2 and ranked["latency_ms"].nunique() < 2):
        return None
    section = Section("Pareto front")
    values = objectives(ranked)
    on_front = pareto_mask(values)
    front = ranked[on_front]
    section.blocks.append(
        f"Objectives: test {score_label()} ↑ (mean over seeds), size ↓, latency at batch 1 ↓. "
        f"{int(on_front.sum())} of {len(ranked)} configurations are on the front: "
        + "; ".join(f"#{int(r)} {c}" for c, r in front["rank"].items())
        + "."
    )
    ref = np.array([0.0, 1.1 * values[:, 1].max(), 1.1 * values[:, 2].max()])
    volume = hypervolume(values, ref)
    section.blocks.append(
        f"Hypervolume: {100 * volume / (ref[1] * ref[2]):.1f} % of the box up to {score_label()} 0, "
        f"{ref[1]:.4g} KiB and {ref[2]:.4g} ms ({volume:.4g} in {score_label()} × KiB × ms); it compares sweeps "
        "with the same reference point only."
    )
    doms = dominators(values)
    labels = list(ranked.index)
    dominated = [
        {
            "#": int(ranked.iloc[i]["rank"]),
            "configuration": labels[i],
            "dominated by": "; ".join(f"#{int(ranked.iloc[j]['rank'])} {labels[j]}" for j in d),
        }
        for i, d in enumerate(doms)
        if d
    ]
    if dominated:
        section.blocks.append(Table(pd.DataFrame(dominated), "Dominated configurations and what dominates them"))
    else:
        section.blocks.append("No configuration is dominated.")
    kib = ranked.assign(size_kib=ranked["size_bytes"] / 1024)
    for frame, column, label, what, name in (
        (kib, "size_kib", "artifact size (KiB, log scale)", "size", "accuracy_vs_size.png"),
        (ranked, "latency_ms", "latency per sample at batch 1 (ms, log scale)", "latency", "accuracy_vs_latency.png"),
    ):
        path = plots.plot_tradeoff(frame, column, label, inputs.out / name)
        caption = f"Test {score_label()} vs {label.split(' (')[0]}; dashed: the {score_label()}-{what} front"
        section.blocks.append(Image(path, caption))
    return section
