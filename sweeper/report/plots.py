"""The report's figures (matplotlib, Agg): each function writes one PNG and returns its path.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state), so they are
safe to draw inside a sweep's process. Labels carry units; front points carry their rank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from sweeper.report.families import UNCOMPRESSED
from sweeper.report.grouping import with_score_names
from sweeper.report.pareto import pareto_mask
from sweeper.report.stats import score_label

__all__ = ["plot_curves", "plot_layer_sensitivity", "plot_lr_sensitivity", "plot_ratio_curves", "plot_tradeoff"]

_DPI = 110


def _log_x(ax: Axes) -> None:
    """Log x axis labelled at 1, 2, 5 x 10^k in plain numbers (no crowded minor labels)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _yerr(mean: pd.Series, low: pd.Series, high: pd.Series) -> np.ndarray:
    """Asymmetric error bars in percent from a 95 % interval (zero where there is none: one seed)."""
    return 100 * np.vstack([(mean - low).fillna(0.0).to_numpy(float), (high - mean).fillna(0.0).to_numpy(float)])


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def plot_tradeoff(table: pd.DataFrame, x: str, xlabel: str, path: Path) -> Path:
    """Test accuracy (mean, 95 % t-interval over seeds) against ``x`` (log scale), the 2-D front drawn.

    Points are coloured by compression family; points on the accuracy-vs-``x`` front are
    joined by a step line and marked with their rank in the ranking table.
    """
    table = with_score_names(table)
    ranked = table[table["score_mean"].notna() & table[x].notna()]
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    for family, group in ranked.groupby("family", sort=True):
        yerr = _yerr(group["score_mean"], group["score_low"], group["score_high"])
        ax.errorbar(group[x], 100 * group["score_mean"], yerr=yerr, fmt="o", ms=7, capsize=3, alpha=0.85, label=family)
    if len(ranked):
        front = ranked[pareto_mask(np.column_stack([-ranked["score_mean"], ranked[x]]))].sort_values(x)
        ax.step(front[x], 100 * front["score_mean"], where="post", color="black", lw=1.2, ls="--", label="Pareto front")
        for i, (rank, xv, yv) in enumerate(zip(front["rank"], front[x], 100 * front["score_mean"], strict=True)):
            offset = (7, 5) if i % 2 == 0 else (7, -13)  # alternate sides: neighbours' labels do not collide
            ax.annotate(
                f"#{int(rank)}",
                (xv, yv),
                xytext=offset,
                textcoords="offset points",
                fontsize=9,
                zorder=5,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
    _log_x(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"test {score_label()} (%)")
    ax.set_title(f"Test {score_label()} vs {xlabel.split(' (')[0]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="compression family", fontsize=9, loc="best")
    return _save(fig, path)


def _interval_curves(curves: pd.DataFrame, x: str, by: str) -> tuple[Figure, Axes]:
    """A figure with one curve of ``mean`` (in %) against ``x`` per value of ``by``, 95 % interval bars."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    for name, curve in curves.sort_values(x).groupby(by, sort=True):
        ax.errorbar(
            curve[x],
            100 * curve["mean"],
            yerr=_yerr(curve["mean"], curve["low"], curve["high"]),
            marker="o",
            capsize=3,
            label=str(name),
        )
    return fig, ax


def _label_log_axes(ax: Axes, xlabel: str, ylabel: str, title: str, legend: str) -> None:
    """A log-scale x axis, the labels, a grid and the legend of an interval-curves plot."""
    _log_x(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(top=min(ax.get_ylim()[1], 101.0))  # a score in % ends at 100, whatever an interval's arithmetic
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title=legend, fontsize=9)


def plot_lr_sensitivity(sensitivity: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy against learning rate (log scale), one curve per optimizer, 95 % interval bars."""
    fig, ax = _interval_curves(sensitivity, "lr", "optimizer")
    _label_log_axes(
        ax,
        "learning rate (log scale)",
        f"validation {score_label()} (%)",
        "Learning-rate sensitivity (mean, 95 % interval over seeds)",
        "optimizer",
    )
    return _save(fig, path)


def plot_ratio_curves(curves: pd.DataFrame, table: pd.DataFrame, path: Path) -> Path:
    """Test accuracy against compression ratio (log scale), one curve per family, 95 % interval bars.

    ``curves`` is :func:`sweeper.report.analysis.ratio_curves` output; the uncompressed
    configurations of ``table`` are drawn as stars at their ratio (1x).
    """
    fig, ax = _interval_curves(curves, "ratio", "family")
    table = with_score_names(table)
    base = table[(table["compression"] == UNCOMPRESSED) & table["score_mean"].notna()]
    if len(base):
        ax.errorbar(
            base["compression_ratio"].fillna(1.0),
            100 * base["score_mean"],
            yerr=_yerr(base["score_mean"], base["score_low"], base["score_high"]),
            fmt="*",
            ms=12,
            capsize=3,
            color="black",
            label="none (uncompressed)",
        )
    _label_log_axes(
        ax,
        "compression ratio (dense fp32 size / artifact size, log scale)",
        f"test {score_label()} (%)",
        f"Test {score_label()} vs compression ratio (mean, 95 % interval over seeds)",
        "compression family",
    )
    return _save(fig, path)


def plot_curves(curves: pd.DataFrame, title: str, legend_title: str, path: Path) -> Path:
    """Validation accuracy and training loss per epoch, one line per curve name (mean ± std band)."""
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for ax, metric, label, scale in (
        (axes[0], "val_score", f"validation {score_label()} (%)", 100.0),
        (axes[1], "train_loss", "training loss (cross-entropy)", 1.0),
    ):
        for name, curve in curves[curves["metric"] == metric].groupby("name", sort=True):
            epoch = curve["epoch"] + 1
            mean, std = scale * curve["mean"], scale * curve["std"].fillna(0.0)
            ax.plot(epoch, mean, marker=".", label=str(name))
            ax.fill_between(epoch, mean - std, mean + std, alpha=0.15)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend(title=legend_title, fontsize=9)
    fig.suptitle(title)
    return _save(fig, path)


def plot_layer_sensitivity(table: pd.DataFrame) -> bytes:
    """PNG of a per-layer sensitivity table (:mod:`sweeper.compression._sensitivity`): one curve per layer.

    Left: the validation-score drop against the bit width, dense; right: against the sparsity, in
    float32. Points above zero lose score; a layer whose curve rises early is a sensitive one.
    """
    import io

    fig = Figure(figsize=(11, 4.4))
    quantized, pruned = fig.subplots(1, 2, sharey=True)
    layers = list(dict.fromkeys(table["layer"]))
    for layer in layers:
        rows = table[table["layer"] == layer]
        dense = rows[(rows["sparsity"] == 0) & (rows["bits"] < 32)].sort_values("bits")
        float32 = rows[rows["bits"] == 32].sort_values("sparsity")
        (line,) = quantized.plot(dense["bits"], 100 * dense["drop"], marker="o", ms=4, label=layer)
        pruned.plot(float32["sparsity"], 100 * float32["drop"], marker="o", ms=4, color=line.get_color())
    quantized.set_xlabel("bit width of this layer alone (dense)")
    pruned.set_xlabel("sparsity of this layer alone (float32)")
    quantized.set_ylabel(f"validation {score_label()} drop (points)")
    for ax in (quantized, pruned):
        ax.axhline(0, color="black", lw=0.8)
        ax.grid(True, alpha=0.3)
    fig.suptitle("Per-layer sensitivity: each layer compressed alone, nothing retrained")
    if len(layers) <= 16:
        quantized.legend(fontsize=8, loc="best", title="layer")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()
