"""Assemble the report of one sweep: load, classify, group, recommend, warn, build the sections, write.

:func:`generate` is what the command line and the Hydra callback call; :func:`write_report`
does the work on DataFrames already loaded (tests and notebooks call it directly). The sections
themselves live in :mod:`sweeper.report.sections`, one module each, registered in one list.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from sweeper.report import checks
from sweeper.report.families import families
from sweeper.report.grouping import (
    REQUIRED_METRICS,
    classify,
    config_labels,
    differing_keys,
    group_configs,
    network_keys,
    split_sweeps,
)
from sweeper.report.inputs import ReportInputs, TableReader
from sweeper.report.perplexity import lower_is_better, write_lower_is_better
from sweeper.report.recommend import Budget, Recommendation, recommend
from sweeper.report.render import render_description, render_html, render_markdown
from sweeper.report.sections import SUMMARY, build_sections
from sweeper.report.sections.answer import card
from sweeper.report.stats import scored_as
from sweeper.scoring import metric_label

__all__ = [
    "ReportResult",
    "analyse",
    "generate",
    "load_sweep",
    "plain",
    "prepare_runs",
    "score_label_of",
    "time_side_by_side",
    "write_report",
]


@dataclass
class ReportResult:
    """What a report run produced: its files, the answer (a short paragraph) and the MLflow description."""

    out_dir: Path
    files: list[Path]
    recommendation: Recommendation
    table: pd.DataFrame
    runs: pd.DataFrame
    others: list[ReportResult] = field(default_factory=list)  # the other sweeps of the same sweep id
    answer: str = ""
    description: str = ""
    warnings: list[checks.ReportWarning] = field(default_factory=list)

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


@dataclass(frozen=True)
class _About:
    """What a report says of where its runs come from, and how it reads what they kept."""

    sweep_id: str
    experiment: str
    read_table: TableReader | None = None
    note: str = ""  # the sweep id held several sweeps: which one this is


def _configurations_csv(table: pd.DataFrame, path: Path) -> None:
    """The per-configuration table as data (``score_*`` columns), without the per-seed lists."""
    nested = [c for c in table.columns if table[c].map(lambda v: isinstance(v, list | dict)).any()]
    table.drop(columns=nested).to_csv(path)


def score_label_of(runs: pd.DataFrame) -> str:
    """How a report names the score of these runs: their task's metric (``accuracy``, ``macro-F1``, ...)."""
    names = runs["score_metric"].dropna().unique() if "score_metric" in runs else []
    return metric_label(names[0]) if len(names) == 1 else "score" if len(names) else "accuracy"


def analyse(
    runs: pd.DataFrame,
    history: pd.DataFrame,
    budget: Budget,
    out: Path | str,
    *,
    sweep_id: str = "",
    experiment: str = "",
    note: str = "",
    read_table: TableReader | None = None,
) -> ReportInputs:
    """What every section reads: the prepared runs, their configurations, the recommendation, its warnings.

    Args:
        runs: :func:`sweeper.tracking.results.load_runs` output (one sweep).
        history: per-epoch curves (may be empty).
        budget: the recommendation's limits.
        out: where the sections write their plots.
        sweep_id: experiment: note: read_table: as :class:`sweeper.report.inputs.ReportInputs` keeps them.
    """
    prepared = prepare_runs(runs)
    table = group_configs(prepared)
    rec = recommend(table, budget)
    warnings = checks.collect(prepared, table, rec)
    return ReportInputs(
        prepared, table, history, budget, rec, warnings, Path(out), sweep_id, experiment, note, read_table
    )


def _write_one(runs: pd.DataFrame, history: pd.DataFrame, budget: Budget, out: Path, about: _About) -> ReportResult:
    """The report of one configuration space (see :func:`write_report`)."""
    out.mkdir(parents=True, exist_ok=True)
    if lower_is_better(runs):  # perplexity: a report of its own, every number as it is
        result = write_lower_is_better(
            prepare_runs(runs), budget, out, sweep_id=about.sweep_id, experiment=about.experiment, note=about.note
        )
        result.answer = result.description = result.recommendation.sentence
        return result
    inputs = analyse(
        runs, history, budget, out, sweep_id=about.sweep_id, experiment=about.experiment, note=about.note,
        read_table=about.read_table,
    )  # fmt: skip
    runs, table, rec, warnings = inputs.runs, inputs.table, inputs.recommendation, inputs.warnings
    runs.to_csv(out / "runs.csv", index=False)
    _configurations_csv(table, out / "configurations.csv")
    sections = build_sections(inputs)
    title = f"Which method to choose: sweep {about.sweep_id}" if about.sweep_id else "Which method to choose"
    (out / "report.md").write_text(render_markdown(title, sections), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, sections), encoding="utf-8")
    files = sorted(p for p in out.iterdir() if p.suffix in (".md", ".html", ".png", ".csv"))
    summary = [s for s in sections if s.title in SUMMARY]
    return ReportResult(
        out, files, rec, table, runs, answer=card(inputs), description=render_description(title, summary),
        warnings=warnings,
    )  # fmt: skip


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
    """Write ``report.md``, ``report.html``, PNG plots, ``runs.csv`` and ``configurations.csv`` for one sweep.

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
    with scored_as(score_label_of(runs)):  # every text names the task's metric
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


def time_side_by_side(
    runs: pd.DataFrame, tracking_uri: str | None, rounds: int = 5, *, log: bool = False
) -> pd.DataFrame:
    """``runs`` with the latencies of the latency round (every distinct network reloaded and timed side by
    side, :mod:`sweeper.report.latency_round`): medians and per-round times, which the answer's latency
    ratios and their intervals read. ``log``: also on the MLflow runs whose trials left their latency to it."""
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
        runs = time_side_by_side(runs, tracking_uri, latency_rounds, log=log_latency)
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
