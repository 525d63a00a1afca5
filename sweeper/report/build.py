"""Assemble the report of one sweep: load, classify, group, rank, recommend, plot, write.

:func:`generate` is what the command line and the Hydra callback call; :func:`write_report`
does the work on DataFrames already loaded (tests and notebooks call it directly).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from sweeper.report import analysis, plots
from sweeper.report.families import families
from sweeper.report.grouping import (
    REQUIRED_METRICS,
    baseline_for,
    classify,
    config_labels,
    differing_keys,
    group_configs,
    network_keys,
    split_sweeps,
)
from sweeper.report.pareto import dominators, hypervolume, pareto_mask
from sweeper.report.perplexity import lower_is_better, write_lower_is_better
from sweeper.report.recommend import Budget, Recommendation, recommend
from sweeper.report.render import Image, Section, Table, render_html, render_markdown
from sweeper.report.stats import Comparison, mean_interval, score_label, score_title, scored_as
from sweeper.scoring import metric_label

__all__ = [
    "SMALL_TRAIN",
    "ReportResult",
    "generate",
    "load_sweep",
    "method_note",
    "plain",
    "prepare_runs",
    "ties_rule",
    "write_report",
]


def method_note() -> str:
    """How every choice of the report is made, and which split it reports."""
    return (
        "Method: every choice (the best learning rate of an optimizer, the best configuration of a family, "
        f"strategy or optimizer, the ranking and the recommendation) is made on the mean **validation** {score_label()} "
        f"over seeds; the **test** {score_label()} of what was selected is reported, never used to select. Intervals: "
        "95 % Student-t interval of the mean over seeds."
    )


def ties_rule() -> str:
    """When two configurations' scores count as a tie."""
    return (
        f"Ties: a difference of test {score_label()} is tested with a paired t-test when the two configurations share "
        "their seeds (same seed: same split and initialisation), Welch's t-test otherwise, at 5 % after Holm's "
        "correction over the comparisons of one table; P(A>B) is the share of seed pairs where A beats B. "
        'A difference that is not significant is a tie: "not distinguishable with N seeds", with the seeds '
        "a test at 80 % power would need at the observed effect. One seed: no interval, never a win."
    )


TableReader = Callable[[str, str], "pd.DataFrame | None"]  # (run id, table name) -> a table a run's method measured
SMALL_TRAIN = 2000  # fewer training samples (after the validation carve) than this: a warning in the header


@dataclass
class ReportResult:
    """What a report run produced."""

    out_dir: Path
    files: list[Path]
    recommendation: Recommendation
    table: pd.DataFrame
    runs: pd.DataFrame
    others: list[ReportResult] = field(default_factory=list)  # the other sweeps of the same sweep id

    @property
    def finished(self) -> int:
        return int((self.runs["outcome"] == "ok").sum())


def prepare_runs(runs: pd.DataFrame, required: Sequence[str] = REQUIRED_METRICS) -> pd.DataFrame:
    """``load_runs`` output with ``outcome``, ``reason``, ``config`` (label) and ``family`` added."""
    prepared = pd.concat([runs.reset_index(drop=True), classify(runs.reset_index(drop=True), required)], axis=1)
    prepared["config"] = config_labels(prepared)
    prepared["family"] = families(prepared)
    return prepared


def load_sweep(experiment: str, sweep_id: str | None, tracking_uri: str | None) -> tuple[pd.DataFrame, str]:
    """The runs of a sweep (the latest when ``sweep_id`` is None) and the sweep's id.

    Raises:
        ValueError: unknown experiment or sweep, or no sweep at all (the message lists those that exist).
    """
    from sweeper.tracking.results import list_sweeps, load_runs

    sweeps = list_sweeps(experiment, tracking_uri=tracking_uri)
    if sweep_id is None:
        if not sweeps:
            raise ValueError(f"--experiment={experiment}: has no sweeps (runs of a multirun); run one with -m")
        sweep_id = sweeps[0]
    elif sweep_id not in sweeps:
        raise ValueError(f"--sweep={sweep_id}: not found in {experiment!r}; existing: {', '.join(sweeps) or 'none'}")
    return load_runs(experiment, sweep_id=sweep_id, tracking_uri=tracking_uri), sweep_id


def _ci(mean: float, low: float, high: float, scale: float = 100.0, digits: int = 1) -> str:
    """``91.0 [88.5, 93.5]`` (mean and its 95 % interval), or ``91.0 (1 seed: no interval)``."""
    if pd.isna(mean):
        return "—"
    if pd.isna(low):
        return f"{scale * mean:.{digits}f} (1 seed: no interval)"
    return f"{scale * mean:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def _test_score(row: pd.Series) -> dict[str, str]:
    """A table's test-score column: the mean over seeds and its 95 % interval, named by the task's metric."""
    return {f"test {score_label()} (%) [95 % CI]": _ci(row["acc_mean"], row["acc_low"], row["acc_high"])}


def _best_of(row: pd.Series, group: str, first: str) -> dict[str, object]:
    """The leading columns of a per-optimizer / per-strategy row: its best configuration and its score."""
    return {
        group: row[group],
        "best configuration": row["best"],
        **_test_score(row),
        "seeds": int(row["n_seeds"]),
        f"vs {first}": _verdict(row["comparison"], "—"),
    }


def _verdict(comparison: Comparison | None, reference: str) -> str:
    """A table's tie marker against its reference row: ``tie (...)``, or the significant difference."""
    if comparison is None:
        return reference
    return ("tie: " if comparison.tie else "") + comparison.words()


def _num(value: float, fmt: str) -> str:
    return "—" if pd.isna(value) else format(value, fmt)


def _latency_note(table: pd.DataFrame) -> str:
    """Where the table's latencies come from: the end-of-sweep round, or each trial's own timing."""
    sources = set(table["latency_source"].dropna()) if "latency_source" in table else set()
    if "interleaved" not in sources:
        return "Latency: each trial's own timing (medians over the trials of the same network)."
    rounds = next(len(r) for r in table["latency_rounds"] if isinstance(r, list))
    return (
        f"Latency: every distinct network reloaded and timed side by side in {rounds} interleaved rounds "
        "at the end of the sweep (median over rounds); comparisons use the ratio within each round"
        + (
            "; networks that could not be reloaded keep their trials' own timing, if their trials timed one."
            if "per trial" in sources
            else "."
        )
    )


def _baseline_row(runs: pd.DataFrame) -> dict[str, object] | None:
    """The task's baseline (measured in every run, :mod:`sweeper.tasks.baselines`) as a ranking row, over seeds."""
    if "baseline_test_score" not in runs or runs["baseline_test_score"].isna().all():
        return None
    per_seed = runs.dropna(subset=["baseline_test_score"]).groupby("seed")[
        ["baseline_val_score", "baseline_test_score"]
    ]
    scores = per_seed.first()
    mean, low, high = mean_interval(scores["baseline_test_score"].tolist())
    names = runs["baseline"].dropna().unique() if "baseline" in runs else []
    return {
        "#": "—",
        "configuration": f"baseline: {names[0] if len(names) == 1 else 'task baseline'}",
        f"val {score_label()} (%)": _num(100 * scores["baseline_val_score"].mean(), ".1f"),
        f"test {score_label()} (%) [95 % CI]": _ci(mean, low, high),
        "seeds": len(scores),
    }


def _ranking(table: pd.DataFrame, batch: str, baseline: dict[str, object] | None = None) -> Table:
    ranked = [str(c) for c in table.index[table["acc_mean"].notna()]]
    verdicts = dict(zip(ranked, analysis.versus_first(table, ranked), strict=True))
    rows = [
        {
            "#": "—" if pd.isna(r["rank"]) else int(r["rank"]),
            "configuration": config,
            f"val {score_label()} (%)": _num(100 * r["val_mean"], ".1f"),
            **_test_score(r),
            "vs #1": _verdict(verdicts.get(str(config)), "—") if str(config) in verdicts else "—",
            "size (KiB)": _num(r["size_bytes"] / 1024, ".1f"),
            "compression ratio": _num(r["compression_ratio"], ".2f")
            + ("x" if pd.notna(r["compression_ratio"]) else ""),
            "latency batch 1 (ms)": _num(r["latency_ms"], ".3f"),
            f"latency/sample batch {batch} (ms)": _num(r["latency_ms_batch"], ".4f"),
            "latency kind": r["latency_kind"] or "—",
            "epochs in all": _num(r["total_epochs"], ".0f"),
            "steps": _num(r["steps"], ".0f"),
            "train time (s)": _num(r["train_seconds"], ".1f"),
            "seeds": int(r["n_seeds"]),
            "failed": int(r["n_failed"]),
            "pruned": int(r["n_pruned"]),
        }
        for config, r in table.iterrows()
    ]
    if baseline is not None:  # what "good" means on this task, measured in the same runs
        rows.append({key: baseline.get(key, "—") for key in rows[0]} if rows else baseline)
    return Table(
        pd.DataFrame(rows),
        f"One row per configuration, ranked by mean validation {score_label()} over seeds; "
        f"test {score_label()}: mean [95 % t-interval]; vs #1: the test-{score_label()} comparison "
        "with the first row (Holm over the table); epochs in all: epochs run + "
        "fine-tuning + teacher epochs (means over seeds); baseline: the task's reference, measured in "
        "the same runs. " + _latency_note(table),
    )


def _objectives(ranked: pd.DataFrame) -> np.ndarray:
    """Minimized objectives per configuration: (-accuracy, size KiB, latency ms)."""
    return np.column_stack([-ranked["acc_mean"], ranked["size_bytes"] / 1024, ranked["latency_ms"]])


def _pareto_section(ranked: pd.DataFrame, size_plot: Path | None, latency_plot: Path | None) -> Section:
    section = Section("Pareto front")
    values = _objectives(ranked)
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
    box = 1.0 * ref[1] * ref[2]
    section.blocks.append(
        f"Hypervolume: {volume:.4g} ({score_label()} fraction × KiB × ms), {100 * volume / box:.1f} % of the box up to "
        f"the reference point ({score_label()} 0, size {ref[1]:.4g} KiB, latency {ref[2]:.4g} ms), i.e. 1.1 × the "
        "largest size and latency in this sweep. Larger is better; it compares sweeps with the same reference."
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
    for path, caption in (
        (size_plot, f"Test {score_label()} vs artifact size; dashed: the {score_label()}-size front"),
        (latency_plot, f"Test {score_label()} vs latency at batch 1; dashed: the {score_label()}-latency front"),
    ):
        if path is not None:
            section.blocks.append(Image(path, caption))
    return section


def _recommendation_section(rec: Recommendation) -> Section:
    section = Section("Recommendation")
    section.blocks.append(f"Budget: {rec.budget.describe()} (applied to means over seeds).")
    section.blocks.append(rec.sentence)
    if rec.best is not None:
        section.blocks.append(f"{len(rec.feasible)} configuration(s) within the budget.")
    section.blocks.append(ties_rule())
    return section


def _family_section(table: pd.DataFrame) -> Section:
    section = Section("Per-family summary against none")
    summary = analysis.family_summary(table)
    if summary.empty:
        section.blocks.append(
            "Nothing to compare: the sweep needs `compression=none` and at least one other "
            "method (e.g. `-m compression=none,quantize`)."
        )
        return section
    rows = [
        {
            "family": r["family"],
            "methods": r["methods"],
            "configs": r["configs"],
            "best configuration": r["best"],
            "baseline": r["baseline"],
            "size ratio (x smaller)": f"{r['size_ratio']:.2f}",
            "latency ratio batch 1 (x, >1 slower)": f"{r['latency_ratio']:.2f}"
            + (" (simulated)" if r["latency_kind"] == "simulated" else ""),
            f"{score_label()} Δ (pp)": _verdict(r["comparison"], ""),
            "epochs in all (vs baseline)": f"{_num(r['epochs'], '.0f')} vs {_num(r['baseline_epochs'], '.0f')}"
            + (" (more training)" if r["epochs"] > r["baseline_epochs"] else ""),
        }
        for _, r in summary.iterrows()
    ]
    section.blocks.append(
        Table(
            pd.DataFrame(rows),
            f"Each family's configuration with the best validation {score_label()} "
            "against the `none` baseline with the same data, model, optimizer, "
            "strategy and lr; the total epochs say whether both had the same "
            "training budget (`compare.equal_budget=true` gives `none` the "
            "extra epochs); Holm over the families",
        )
    )
    return section


def _ratio_section(table: pd.DataFrame, out_dir: Path) -> Section | None:
    curves = analysis.ratio_curves(table)
    if curves.empty:
        return None
    section = Section(f"{score_title()} against compression ratio")
    section.blocks.append(
        Image(
            plots.plot_ratio_curves(curves, table, out_dir / "accuracy_vs_ratio.png"),
            f"Test {score_label()} (mean, 95 % t-interval over seeds) against compression ratio, one "
            "curve per family; the star: the uncompressed baseline",
        )
    )
    matched = analysis.matched_ratios(curves)
    if matched.empty:
        section.blocks.append("No two families reach overlapping compression ratios: no matched comparison.")
        return section
    rows = [
        {
            "family A": r["family_a"],
            "family B": r["family_b"],
            "compression ratio": f"{r['ratio']:.2f}x",
            f"test {score_label()} A (%)": f"{100 * r['acc_a']:.1f}",
            f"test {score_label()} B (%)": f"{100 * r['acc_b']:.1f}",
            "A - B (pp)": f"{r['delta_pp']:+.1f}",
        }
        for _, r in matched.iterrows()
    ]
    section.blocks.append(
        Table(
            pd.DataFrame(rows),
            "Families at matched compression ratios: each family's curve of "
            f"mean test {score_label()} interpolated linearly in log ratio, within the "
            "range both reach (no extrapolation)",
        )
    )
    return section


def _optimizer_section(runs: pd.DataFrame, table: pd.DataFrame, history: pd.DataFrame, out_dir: Path) -> Section:
    section = Section("Optimizer comparison")
    chosen, which = analysis.baseline_runs(runs)
    target = analysis.target_accuracy(chosen)
    summary = analysis.optimizer_summary(chosen, table, history, target)
    section.blocks.append(
        f"From {which}. Best: the optimizer's configuration (learning rate) with the best mean validation "
        f"{score_label()}; its test {score_label()} is reported. Speed: epochs until validation "
        f"{score_label()} first reaches {100 * target:.1f} % (90 % of the best validation {score_label()} in the sweep), median "
        f"over its seeds. Tunability: share of the learning rates tried whose mean validation {score_label()} is within "
        "1 pp of the optimizer's best learning rate."
    )
    first = summary["optimizer"].iloc[0] if len(summary) else ""
    rows = [
        {
            **_best_of(r, "optimizer", first),
            "lr": _num(r["lr"], ".3g"),
            "epochs to target": _num(r["epochs_to_target"], ".0f") + f" ({r['reached']} seeds reached)",
            "tunability": f"{100 * r['tunability']:.0f} % of {r['lrs_tried']} lr" if r["lrs_tried"] else "—",
        }
        for _, r in summary.iterrows()
    ]
    if rows:
        section.blocks.append(Table(pd.DataFrame(rows), "Optimizers, DeepOBS-style"))
    sensitivity = analysis.lr_sensitivity(chosen)
    if len(sensitivity):
        section.blocks.append(
            Image(
                plots.plot_lr_sensitivity(sensitivity, out_dir / "lr_sensitivity.png"),
                f"Validation {score_label()} (what selects the lr) against learning rate, one curve per "
                "optimizer, 95 % t-intervals over seeds",
            )
        )
    _append_curves(section, chosen, history, summary, "optimizer", out_dir / "optimizer_curves.png")
    return section


def _append_curves(
    section: Section, chosen: pd.DataFrame, history: pd.DataFrame, summary: pd.DataFrame, group: str, path: Path
) -> None:
    """The learning curves of each ``group`` option's best configuration (mean ± std over seeds), if any."""
    curves = analysis.learning_curves(
        chosen, history, dict(zip(summary.get(group, []), summary.get("best", []), strict=True))
    )
    if len(curves):
        title = f"Learning curves: each {group}'s best configuration"
        section.blocks.append(
            Image(plots.plot_curves(curves, title, group, path), f"Learning curves per {group} (mean ± std over seeds)")
        )


def _strategy_section(runs: pd.DataFrame, table: pd.DataFrame, history: pd.DataFrame, out_dir: Path) -> Section:
    section = Section("Training strategies")
    chosen, which = analysis.baseline_runs(runs)
    summary = analysis.strategy_summary(chosen, table)
    section.blocks.append(
        f"From {which}; each strategy's configuration with the best mean validation {score_label()}. "
        "Saving: the share of planned epochs not run (early stopping)."
    )
    first = summary["strategy"].iloc[0] if len(summary) else ""
    rows = [
        {
            **_best_of(r, "strategy", first),
            "epochs run": _num(r["epochs_run"], ".1f"),
            "epochs planned": _num(r["epochs_planned"], ".0f"),
            "saving": "—" if pd.isna(r["saving"]) else f"{100 * r['saving']:.0f} %",
            "train time (s)": _num(r["train_seconds"], ".1f"),
        }
        for _, r in summary.iterrows()
    ]
    if rows:
        section.blocks.append(Table(pd.DataFrame(rows), "Training strategies"))
    _append_curves(section, chosen, history, summary, "strategy", out_dir / "learning_curves.png")
    return section


def _layers_section(runs: pd.DataFrame, out: Path, read_table: TableReader | None) -> Section | None:
    """What ``compression=mixed`` chose for each layer, per configuration, over its seeds (None: no such run),
    and the per-layer sensitivity its first run measured (``read_table``: a run's ``sensitivity`` table)."""
    ok = runs[runs["outcome"] == "ok"]
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
    labels = list(dict.fromkeys(row["configuration"] for row in rows))
    if read_table is None:
        return section
    for k, label in enumerate(labels, start=1):
        first = ok[ok["config"] == label].sort_values("seed").iloc[0]
        table = read_table(str(first["run_id"]), "sensitivity")
        if table is not None:
            path = out / f"sensitivity-{k}.png"
            path.write_bytes(plots.plot_layer_sensitivity(table))
            caption = f"Per-layer sensitivity of `{label}` (seed {first['seed']}): each layer alone at each setting"
            section.blocks.append(Image(path, caption))
    return section


def _ratio_text(a: object, b: object) -> str:
    """``0.21x [0.19, 0.23]``: per-round times ``a`` over ``b`` (the same rounds), or — without both."""
    from sweeper.report.latency_round import ratio_interval

    if not (isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and a):
        return "—"
    ratio, low, high = ratio_interval(a, b)
    interval = f" [{low:.2f}, {high:.2f}]" if not math.isnan(low) else ""
    same = " (within measurement)" if not math.isnan(low) and low <= 1 <= high else ""
    return f"{ratio:.2f}x{interval}{same}"


def _runtimes_section(runs: pd.DataFrame, table: pd.DataFrame) -> Section | None:
    """Each configuration in each runtime of ``measure.runtimes``: score, size, latency, ratios (None: torch only)."""
    exported = "test_score_onnxruntime" in table and table["test_score_onnxruntime"].notna().any()
    refused = "onnxruntime_unavailable" in runs and runs["onnxruntime_unavailable"].notna().any()
    if not (exported or refused):
        return None
    ok = runs[runs["outcome"] == "ok"]
    rows = []
    for config, r in table[table["acc_mean"].notna()].iterrows():
        group = ok[ok["config"] == config]
        reason = _first_text(group, "onnxruntime_unavailable")
        baseline = baseline_for(table, str(config))
        reference = table.loc[baseline] if baseline is not None else None
        rows.append(
            {
                "configuration": config,
                "in onnxruntime": _first_text(group, "onnxruntime_model")
                or f"cannot export: {reason or 'not measured'}",
                f"test {score_label()} torch / onnxruntime (%)": f"{_num(100 * r['acc_mean'], '.1f')} / "
                + _num(100 * r.get("test_score_onnxruntime", math.nan), ".1f"),
                "size torch / onnx (KiB)": f"{_num(r['size_bytes'] / 1024, '.1f')} / "
                + _num(r.get("size_bytes_onnxruntime", math.nan) / 1024, ".1f"),
                "batch 1 torch / onnxruntime (ms)": f"{_num(r['latency_ms'], '.3f')} / "
                + _num(r.get("latency_ms_onnxruntime", math.nan), ".3f"),
                "onnxruntime / torch": _ratio_text(r.get("latency_rounds_onnxruntime"), r.get("latency_rounds")),
                "onnxruntime vs none in onnxruntime": "—"
                if reference is None or baseline == config
                else _ratio_text(r.get("latency_rounds_onnxruntime"), reference.get("latency_rounds_onnxruntime")),
            }
        )
    text = (
        "`measure.runtimes` measured each deployed network in ONNX Runtime too (one thread, as PyTorch): float "
        "networks exported as they run in PyTorch; torch int8 artifacts (no ONNX form) as their float network "
        f"quantized by ONNX Runtime's own quantizer, whose test {score_label()} is measured again. Ratios are "
        "geometric means of the per-round ratios of the interleaved latency round at batch 1 [95 % interval]; "
        "below 1 is faster. The runtime often decides whether int8 pays on a CPU."
    )
    return Section("Runtimes", [text, Table(pd.DataFrame(rows), "Each configuration in each runtime")])


def _first_text(group: pd.DataFrame, column: str) -> str:
    values = group[column].dropna().astype(str) if column in group else pd.Series(dtype=str)
    return str(values.iloc[0]) if len(values) else ""


def _failures_section(runs: pd.DataFrame) -> Section:
    section = Section("Failed and pruned runs")
    bad = runs[runs["outcome"] != "ok"]
    if bad.empty:
        section.blocks.append(f"None: all {len(runs)} runs finished with every metric.")
        return section
    section.blocks.append(f"{len(bad)} of {len(runs)} runs are left out of the ranking.")
    frame = pd.DataFrame(
        {
            "run": bad["run_name"],
            "configuration": bad["config"],
            "seed": bad["seed"],
            "status": bad["status"],
            "outcome": bad["outcome"],
            "reason": bad["reason"].str.slice(0, 200),
        }
    )
    section.blocks.append(Table(frame))
    return section


def _batch_label(runs: pd.DataFrame) -> str:
    values = runs["measure.latency_batch"].dropna().unique() if "measure.latency_batch" in runs else []
    return "≤" + "/".join(str(int(v)) for v in sorted(values)) if len(values) else "N"


def _uncompressed(runs: pd.DataFrame, threshold: float = 0.05) -> list[str]:
    """A warning per configuration whose method left a share of the weights uncompressed (recurrent layers)."""
    if "uncompressed_share" not in runs:
        return []
    ok = runs[(runs["outcome"] == "ok") & (runs["uncompressed_share"] > threshold)]
    lines = []
    for label, group in ok.groupby("config", sort=False):
        kinds = group["uncompressed_layers"].dropna().iloc[0] if "uncompressed_layers" in group else "recurrent"
        lines.append(
            f"**Warning**: `{label}` left {100 * group['uncompressed_share'].max():.0f} % of its network's weights "
            f"uncompressed ({kinds} layers: no method here compresses recurrent weights); its size and latency "
            "are those of a partly compressed network."
        )
    return lines


def _split_sizes(runs: pd.DataFrame) -> list[str]:
    """The header's split sizes (train / val / test samples) and a warning when training data is small."""
    ok = runs[runs["outcome"] == "ok"]
    columns = [c for c in ("train_samples", "val_samples", "test_samples") if c in ok and ok[c].notna().any()]
    if not columns:
        return ["Split sizes: not logged by these runs (trials log `train_samples`, `val_samples`, `test_samples`)."]

    def shown(column: str) -> str:
        values = ok[column].dropna().astype(int)
        low, high = values.min(), values.max()
        return f"{low:,}" if low == high else f"{low:,}–{high:,}"

    names = {"train_samples": "train", "val_samples": "validation", "test_samples": "test"}
    lines = ["Split sizes (samples): " + ", ".join(f"{names[c]} {shown(c)}" for c in columns) + "."]
    if "train_samples" in columns and ok["train_samples"].min() < SMALL_TRAIN:
        lines.append(
            f"**Warning**: {int(ok['train_samples'].min()):,} training samples after the validation carve "
            f"(fewer than {SMALL_TRAIN:,}): on small data the carve itself costs {score_label()}; compare with "
            "published numbers only after training on every training sample, or lower `data.val_fraction`."
        )
    return lines


@dataclass(frozen=True)
class _About:
    """What a report says of where its runs come from, and how it reads what they kept."""

    sweep_id: str
    experiment: str
    read_table: TableReader | None = None
    note: str = ""  # the sweep id held several sweeps: which one this is


def _write_one(runs: pd.DataFrame, history: pd.DataFrame, budget: Budget, out: Path, about: _About) -> ReportResult:
    """The report of one configuration space (see :func:`write_report`)."""
    sweep_id, experiment, note = about.sweep_id, about.experiment, about.note
    out.mkdir(parents=True, exist_ok=True)
    runs = prepare_runs(runs)
    if lower_is_better(runs):  # perplexity: a report of its own, every number as it is
        return write_lower_is_better(runs, budget, out, sweep_id=sweep_id, experiment=experiment, note=note)
    runs.to_csv(out / "runs.csv", index=False)
    table = group_configs(runs)
    rec = recommend(table, budget)
    ranked = table[table["acc_mean"].notna()]
    counts = runs["outcome"].value_counts()
    title = f"Which method to choose: sweep {sweep_id}" if sweep_id else "Which method to choose"
    header = Section(
        "Sweep",
        [
            f"Experiment `{experiment or '?'}`, sweep `{sweep_id or '?'}`: {len(runs)} runs, "
            f"{counts.get('ok', 0)} finished, {counts.get('failed', 0)} failed, {counts.get('pruned', 0)} pruned; "
            f"{len(table)} configurations. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
            *([note] if note else []),
            method_note(),
            *_split_sizes(runs),
            *_uncompressed(runs),
        ],
    )
    if ranked.empty:
        header.blocks.append("**No run finished**: nothing to rank or recommend. The failures are listed below.")
        sections = [header, _failures_section(runs)]
    else:
        ranked_kib = ranked.assign(size_kib=ranked["size_bytes"] / 1024)
        size_plot = plots.plot_tradeoff(
            ranked_kib, "size_kib", "artifact size (KiB, log scale)", out / "accuracy_vs_size.png"
        )
        latency_plot = plots.plot_tradeoff(
            ranked, "latency_ms", "latency per sample at batch 1 (ms, log scale)", out / "accuracy_vs_latency.png"
        )
        ratio, layers = _ratio_section(table, out), _layers_section(runs, out, about.read_table)
        runtimes = _runtimes_section(runs, table)
        sections = [
            header,
            _recommendation_section(rec),
            Section("Ranking", [_ranking(table, _batch_label(runs), _baseline_row(runs))]),
            _pareto_section(ranked, size_plot, latency_plot),
            _family_section(table),
            *([ratio] if ratio is not None else []),
            *([layers] if layers is not None else []),
            *([runtimes] if runtimes is not None else []),
            _optimizer_section(runs, table, history, out),
            _strategy_section(runs, table, history, out),
            _failures_section(runs),
        ]
    (out / "report.md").write_text(render_markdown(title, sections), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, sections), encoding="utf-8")
    files = sorted(p for p in out.iterdir() if p.suffix in (".md", ".html", ".png", ".csv"))
    return ReportResult(out, files, rec, table, runs)


def write_report(
    runs: pd.DataFrame,
    history: pd.DataFrame,
    budget: Budget,
    out_dir: Path | str,
    *,
    sweep_id: str = "",
    experiment: str = "",
    read_table: TableReader | None = None,
) -> ReportResult:
    """Write ``report.md``, ``report.html``, PNG plots and ``runs.csv`` for the runs of one sweep.

    A sweep id whose runs were made under different fixed overrides holds several sweeps
    (:func:`sweeper.report.grouping.split_sweeps`): the most recent is reported in
    ``out_dir``, each other one in ``out_dir/sweep-<k>/``; every report names the others
    and never mixes their runs.

    Args:
        runs: :func:`sweeper.tracking.results.load_runs` output (one sweep id).
        history: :func:`sweeper.tracking.results.load_history` output for those runs (may be empty).
        budget: the limits of the recommendation.
        out_dir: created if missing.
        sweep_id: experiment: shown in the title.
        read_table: reads a table a run's method measured (``(run_id, name) -> DataFrame | None``,
            :func:`sweeper.tracking.results.load_table`); None: such tables are not drawn.
    """
    names = runs["score_metric"].dropna().unique() if "score_metric" in runs else []
    label = metric_label(names[0]) if len(names) == 1 else "score" if len(names) else "accuracy"
    with scored_as(label):  # every text names the task's metric
        return _write_all(runs, history, budget, Path(out_dir), _About(sweep_id, experiment, read_table))


def _write_all(runs: pd.DataFrame, history: pd.DataFrame, budget: Budget, out: Path, about: _About) -> ReportResult:
    parts = split_sweeps(runs)
    if len(parts) == 1:
        return _write_one(runs, history, budget, out, about)
    keys = differing_keys([part for _, part in parts])
    dirs = [out, *(out / f"sweep-{k}" for k in range(2, len(parts) + 1))]
    listing = "; ".join(
        f"`{name}` in {'this report' if d == out else f'{d.name}/report.md'}"
        for (name, _), d in zip(parts, dirs, strict=True)
    )
    differing = f" (differing config keys: {', '.join(f'`{k}`' for k in keys)})" if keys else ""
    results = []
    for (name, part), directory in zip(parts, dirs, strict=True):
        note = (
            f"**{len(parts)} sweeps under one sweep id**: its runs were made under different fixed overrides"
            f"{differing} and are reported separately, never mixed. This report: `{name}`"
            f"{' (the most recent)' if directory == out else ''}. All: {listing}. To keep sweeps apart, give each "
            "its own sweep dir (`hydra.sweep.dir=...`) or `tracking.sweep_id`."
        )
        results.append(_write_one(part, history, budget, directory, replace(about, note=note)))
    main, *others = results
    main.others = others
    return main


def _interleaved_latency(runs: pd.DataFrame, tracking_uri: str | None, rounds: int, log: bool) -> pd.DataFrame:
    """``runs`` with the latencies of the end-of-sweep round (the networks timed side by side);
    ``log``: also on the MLflow runs whose trials left their latency to it."""
    from sweeper.report.latency_round import apply_round, interleaved_round, load_networks, log_round

    runs = runs.reset_index(drop=True)
    prepared = prepare_runs(runs, [m for m in REQUIRED_METRICS if m != "latency_ms"])  # trials may leave it to us
    keys = network_keys(prepared)
    networks = load_networks(prepared, keys, tracking_uri)
    if not networks:
        return runs
    timed = apply_round(runs, keys, interleaved_round(networks, rounds=rounds))
    if log:
        log_round(timed, tracking_uri)
    return timed


def generate(
    budget: Budget,
    out_dir: Path | str,
    *,
    experiment: str = "sweeper",
    sweep_id: str | None = None,
    tracking_uri: str | None = None,
    latency_rounds: int = 5,
    log_latency: bool = True,
) -> ReportResult:
    """Load a sweep from MLflow (the latest when ``sweep_id`` is None) and write its report.

    ``latency_rounds`` > 0: every distinct deployed network is reloaded and timed side by side
    in that many interleaved rounds (:mod:`sweeper.report.latency_round`); its latencies and
    ratios replace the trials' own, and (``log_latency``) are logged to the runs whose trials did
    not time themselves (:func:`sweeper.report.latency_round.log_round`). 0: the trials' own measurements.

    Raises:
        ValueError: unknown experiment or sweep (the message lists those that exist).
    """
    from sweeper.tracking.results import load_history, load_table

    runs, sweep_id = load_sweep(experiment, sweep_id, tracking_uri)
    if latency_rounds > 0:
        runs = _interleaved_latency(runs, tracking_uri, latency_rounds, log_latency)
    finished = prepare_runs(runs)
    ids = finished.loc[finished["outcome"] == "ok", "run_id"].astype(str).tolist()
    history = (
        load_history(ids, metrics=("val_score", "train_loss"), tracking_uri=tracking_uri)
        if ids
        else (pd.DataFrame(columns=["run_id", "metric", "epoch", "value"]))
    )
    read_table = functools.partial(load_table, tracking_uri=tracking_uri)
    return write_report(runs, history, budget, out_dir, sweep_id=sweep_id, experiment=experiment, read_table=read_table)


def plain(text: str) -> str:
    """Report text without its Markdown emphasis, for the console."""
    return text.replace("**", "").replace("`", "")
