"""The end of a search: the best trial or the Pareto front, as a file, in MLflow and on the console."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

if TYPE_CHECKING:
    import optuna

    from sweeper.search.objectives import Constraint
    from sweeper.search.space import SearchSpace

__all__ = ["RESULTS_FILE", "UNLIMITED", "count_states", "progress_line", "summarize", "write_results"]

RESULTS_FILE = "optimization_results.yaml"
UNLIMITED = 10**9  # n_trials of a search with a timeout and no n_trials: the time budget ends it


def count_states(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ...)."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _entry(trial: optuna.trial.FrozenTrial, space: SearchSpace, objectives: Sequence[str]) -> dict[str, Any]:
    values = space.values_from_params(trial.params)
    return {
        "trial": trial.number,
        "values": dict(zip(objectives, [float(v) for v in trial.values or []], strict=True)),
        "params": values,
        "overrides": space.overrides(values),
        "mlflow_run_id": trial.user_attrs.get("mlflow_run_id"),
    }


def summarize(
    study: optuna.Study, space: SearchSpace, objectives: Mapping[str, str], constraints: Sequence[Constraint]
) -> dict[str, Any]:
    """What the search found: the best feasible trial (one objective) or the feasible Pareto front."""
    names = list(objectives)
    counts = count_states(study)
    results: dict[str, Any] = {
        "study_name": study.study_name,
        "objectives": dict(objectives),
        "constraints": {c.metric: f"{c.op} {c.bound:g}" for c in constraints},
        "trials": {state.lower(): n for state, n in sorted(counts.items())},
    }
    # Optuna keeps only feasible trials here when the trials carry constraints
    best = sorted(study.best_trials, key=lambda t: t.number) if counts.get("COMPLETE") else []
    if len(names) == 1:
        results["best"] = _entry(best[0], space, names) if best else None
    else:
        results["pareto_front"] = [_entry(t, space, names) for t in best]
    return results


def write_results(results: Mapping[str, Any], sweep_dir: Path) -> Path:
    """Write ``optimization_results.yaml`` into ``sweep_dir``; return its path."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / RESULTS_FILE
    OmegaConf.save(OmegaConf.create(dict(results)), path)
    return path


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def progress_line(study: optuna.Study, objectives: Mapping[str, str], n_trials: int, elapsed: float) -> str:
    """``study S: 4/6 done (1 pruned, 0 failed) | best val_score 0.93 (trial 2) | 12.3 s``."""
    counts = count_states(study)
    done = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
    target = f"{done}/{n_trials}" if n_trials < UNLIMITED else str(done)
    head = f"study {study.study_name}: {target} done ({counts.get('PRUNED', 0)} pruned, {counts.get('FAIL', 0)} failed)"
    best = sorted(study.best_trials, key=lambda t: t.number) if counts.get("COMPLETE") else []
    if not best:
        tail = "no feasible trial yet"
    elif len(objectives) == 1:
        tail = f"best {next(iter(objectives))} {_fmt(best[0].values[0])} (trial {best[0].number})"
    else:
        tail = f"Pareto front {len(best)} trial{'s' * (len(best) != 1)}"
    return f"{head} | {tail} | {elapsed:.1f} s"
