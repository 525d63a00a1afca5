"""``python -m sweeper.sensitivity [overrides]``: how much each layer alone loses at each bit width and sparsity.

Trains the configured model once (the same config as ``python -m sweeper``: data, model, optimizer,
strategy, seed), then compresses each prunable/quantizable layer on its own at every candidate of
``sensitivity.bits`` and ``sensitivity.sparsities`` (and both), scores the validation split and
restores it: no training after the first. Writes ``sensitivity.csv`` (one row per layer and setting:
bytes in a packed artifact, validation score, drop) and ``sensitivity.png`` (one curve per layer) into
the run's output directory, prints the tolerance of each layer, and logs all of it to an MLflow run
(tag ``sweeper_kind=sensitivity``). ``compression=mixed`` measures the same table before it allocates
a size budget (:mod:`sweeper.compression._mixed`).

Example::

    python -m sweeper.sensitivity model=resnet data=mnist 'sensitivity.bits=[2,4,8]'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from sweeper.trial.context import JobContext
    from sweeper.trial.plan import TrialPlan

__all__ = ["TOLERANCE", "analyse", "main", "tolerances"]

TOLERANCE = 0.01  # a setting "keeps" the score when it loses at most one point (0.01)


def tolerances(table: pd.DataFrame, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Per layer: the fewest bits (dense) and the highest sparsity (float32) that lose at most ``tolerance``.

    Example:
        >>> t = pd.DataFrame({"layer": ["a"] * 3, "params": [9] * 3, "bits": [2, 4, 32],
        ...                   "sparsity": [0.0, 0.0, 0.0], "drop": [0.2, 0.0, 0.0]})
        >>> tolerances(t)[["layer", "min_bits", "max_sparsity"]].values.tolist()
        [['a', 4, 0.0]]
    """
    rows = []
    for layer, group in table.groupby("layer", sort=False):
        kept = group[group["drop"] <= tolerance]
        dense, float32 = kept[kept["sparsity"] == 0], kept[kept["bits"] == 32]
        rows.append((layer, int(group["params"].iloc[0]), int(dense["bits"].min()), float(float32["sparsity"].max())))
    return pd.DataFrame(rows, columns=["layer", "params", "min_bits", "max_sparsity"])


def analyse(cfg: DictConfig, ctx: JobContext) -> pd.DataFrame:
    """Train the model ``cfg`` describes, measure its sensitivity table, write the CSV and the plot to the
    job's output directory."""
    from sweeper.compression._sensitivity import layer_sensitivity
    from sweeper.compression._targets import WeightSelection, weight_refs
    from sweeper.progress import TrialProgress
    from sweeper.report.plots import plot_layer_sensitivity
    from sweeper.report.stats import scored_as
    from sweeper.trial.plan import plan_trial
    from sweeper.trial.run import train_stage

    plan = plan_trial(cfg, choices=ctx.choices)
    out_dir = ctx.output_dir
    options = cfg.sensitivity
    refs = weight_refs(plan.model, WeightSelection(embeddings=bool(options.get("embeddings", True))))
    progress = TrialProgress(
        "sensitivity: training", plan.strategy.epochs, metric=plan.task.score_metric, live=ctx.live_progress
    )
    train_stage(plan, epoch_hook=progress.epoch)
    print(
        f"sensitivity: {len(refs)} layers x {len(options.bits) + 1} widths x {len(options.sparsities) + 1} sparsities"
    )
    table = layer_sensitivity(plan.model, plan.task, refs, list(options.bits), list(options.sparsities))
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "sensitivity.csv", index=False)
    with scored_as(plan.task.score_metric):
        (out_dir / "sensitivity.png").write_bytes(plot_layer_sensitivity(table))
    base = float(table["val_score"].iloc[0] + table["drop"].iloc[0])
    print(f"validation {plan.task.score_metric} of the trained model: {base:.4f}")
    print(f"each layer alone, losing at most {TOLERANCE * 100:g} point(s):")
    print(tolerances(table).to_string(index=False))
    print(f"table: {out_dir / 'sensitivity.csv'}\nplot:  {out_dir / 'sensitivity.png'}")
    if cfg.tracking.enabled:
        _track(cfg, plan, out_dir, base)
    return table


def _track(cfg: DictConfig, plan: TrialPlan, out_dir: Path, base: float) -> None:
    from sweeper.configs import flatten, plain_dict
    from sweeper.tracking.runs import TrialRun, resolve_tracking_uri, source_tags

    tags = {**source_tags(), **plan.choices, "seed": str(plan.seed), "sweeper_kind": "sensitivity"}
    name = f"sensitivity {plan.choices['model']} seed{plan.seed}"
    with TrialRun(
        resolve_tracking_uri(cfg.tracking.uri), str(cfg.tracking.experiment), run_name=name, tags=tags
    ) as run:
        run.log_params(flatten(plain_dict(cfg)))
        run.log_results({"val_score": base})
        run.log_artifacts([out_dir / "sensitivity.csv", out_dir / "sensitivity.png"])
        print(f"MLflow run {run.run_id}")


@hydra.main(version_base="1.3", config_path="pkg://sweeper.conf", config_name="config")
def _task(cfg: DictConfig) -> None:
    from sweeper.trial.context import job_context

    ctx = job_context(cfg)
    analyse(cfg, ctx)
    OmegaConf.save(cfg, ctx.output_dir / "config.yaml", resolve=True)


def main() -> None:
    """Console entry point: ``python -m sweeper.sensitivity [overrides]``."""
    from sweeper.__main__ import main as sweeper_main

    sweeper_main(_task)


if __name__ == "__main__":
    main()
