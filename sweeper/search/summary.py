"""The end of a search: the best trial or the Pareto front, as a file, in MLflow and on the console."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

if TYPE_CHECKING:
    import optuna

    from sweeper.search.objectives import Constraint
    from sweeper.search.space import SearchSpace

__all__ = ["RESULTS_FILE", "count_states", "log_results", "progress_line", "summarize", "write_results"]

RESULTS_FILE = "optimization_results.yaml"
STUDY_ROLE_TAG = "sweeper_role"  # the MLflow run holding a study's results has sweeper_role=study


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


def log_results(path: Path, results: Mapping[str, Any], *, tracking_uri: str, experiment: str) -> str:
    """Log the results file to the study's MLflow run (``sweeper_role=study``), created on first use."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    from sweeper.tracking import experiment_id

    client = MlflowClient(tracking_uri=tracking_uri)
    exp_id = experiment_id(client, experiment)
    study = str(results["study_name"])
    found = client.search_runs(
        [exp_id], filter_string=f"tags.{STUDY_ROLE_TAG} = 'study' and tags.optuna_study = '{study}'", max_results=1
    )
    if found:
        run_id = found[0].info.run_id
    else:
        run_tags = {STUDY_ROLE_TAG: "study", "optuna_study": study}
        run_id = client.create_run(exp_id, run_name=f"study {study}", tags=run_tags).info.run_id
    best = results.get("best")
    now = int(time.time() * 1000)
    metrics = [Metric(f"best_{k}", float(v), now, 0) for k, v in (best or {}).get("values", {}).items()]
    tags = [RunTag(f"trials_{state}", str(n)) for state, n in results["trials"].items()]
    if best:
        tags.append(RunTag("best_trial", str(best["trial"])))
    if "pareto_front" in results:
        tags.append(RunTag("pareto_trials", ",".join(str(e["trial"]) for e in results["pareto_front"])))
    client.log_batch(run_id, metrics=metrics, tags=tags)
    client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def progress_line(
    study: optuna.Study, objectives: Mapping[str, str], n_trials: int, elapsed: float
) -> str:
    """``study S: 4/6 done (1 pruned, 0 failed) | best val_accuracy 0.93 (trial 2) | 12.3 s``."""
    counts = count_states(study)
    done = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
    head = (f"study {study.study_name}: {done}/{n_trials} done "
            f"({counts.get('PRUNED', 0)} pruned, {counts.get('FAIL', 0)} failed)")
    best = sorted(study.best_trials, key=lambda t: t.number) if counts.get("COMPLETE") else []
    if not best:
        tail = "no feasible trial yet"
    elif len(objectives) == 1:
        tail = f"best {next(iter(objectives))} {_fmt(best[0].values[0])} (trial {best[0].number})"
    else:
        tail = f"Pareto front {len(best)} trial{'s' * (len(best) != 1)}"
    return f"{head} | {tail} | {elapsed:.1f} s"
