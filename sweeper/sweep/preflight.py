"""Check every job of a grid multirun before the first one trains.

A Hydra callback (``hydra.callbacks.preflight`` in ``conf/config.yaml``): at the start of a
multirun run by Hydra's basic (grid) sweeper it expands the sweep into its jobs exactly as
that sweeper does, composes each job's config and plans its trial (:func:`sweeper.trial.plan.plan_trial`:
every component instantiated and checked, nothing trained). Then:

* jobs with bad input (an unknown key, an out-of-range value, a plug-in that fails) are
  reported all at once, one line each, and the process exits with status 2 before any
  training (Hydra turns a callback's exceptions into warnings, so the callback exits itself);
* jobs whose compression method cannot handle the model (:class:`~sweeper.compression.UnsupportedLayer`)
  are announced; they run as FAILED trials with that reason, and the sweep goes on.

With ``compare.equal_budget=true`` and ``compare.extra_epochs=auto`` it also hands the grid's
longest fine-tuning (in epochs) to the ``none`` jobs. The Optuna sweeper checks its own search space (one config per branch). Switch the check off
with ``hydra.callbacks.preflight.enabled=false``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

from sweeper.errors import one_line
from sweeper.trial import layout as sweep_layout
from sweeper.trial.context import publish_equal_budget, publish_grid

__all__ = ["PreflightCallback", "bad_jobs", "compose_job", "grid_jobs"]

log = logging.getLogger("sweeper")

_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def grid_jobs(config: DictConfig) -> list[list[str]]:
    """The override lists of the jobs Hydra's basic sweeper launches for this multirun config."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = [str(a) for a in config.hydra.overrides.task]
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + arguments
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


class PreflightCallback(Callback):
    """Plans every job of a grid multirun before launching it; see the module docstring.

    Args:
        enabled: false to skip the check.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or config.hydra.sweeper.get("_target_") != _BASIC_SWEEPER:
            return
        jobs = grid_jobs(config)
        publish_grid(sweep_layout.from_jobs(jobs))  # the grid's size, swept keys, fixed overrides
        composed = [_compose_or_error(config, overrides) for overrides in jobs]
        extra_epochs = None
        if config.get("compare", {}).get("equal_budget") is True:
            extra_epochs = _hand_over_equal_budget(composed)  # before planning: the none jobs' plans read it
        bad = bad_jobs(jobs, composed, extra_epochs=extra_epochs)
        if bad:
            lines = [f"{len(bad)} of {len(jobs)} jobs have bad input; nothing was trained", *bad]
            print("\n".join(f"sweeper: error: {line}" for line in lines), file=sys.stderr)
            raise SystemExit(2)


Composed = tuple[DictConfig, dict[str, str]] | Exception  # a job's config and choices, or why it does not compose


def compose_job(config: DictConfig, overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """One job's config (without its ``hydra`` node) and Hydra's choices of groups, as the launcher composes it."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    hydra = GlobalHydra.instance().hydra
    assert hydra is not None  # a multirun is running
    job_cfg = hydra.compose_config(
        str(config.hydra.job.config_name), overrides, run_mode=RunMode.RUN, with_log_configuration=False
    )
    choices = {str(k): str(v) for k, v in job_cfg.hydra.runtime.choices.items()}
    with open_dict(job_cfg):
        del job_cfg["hydra"]
    return job_cfg, choices


def _compose_or_error(config: DictConfig, overrides: list[str]) -> Composed:
    try:
        return compose_job(config, overrides)
    except Exception as exc:  # an unknown option or key: reported as bad input by bad_jobs
        return exc


def _hand_over_equal_budget(composed: list[Composed]) -> int:
    """``compare.extra_epochs=auto``: the most fine-tuning epochs of the grid's jobs, for its ``none`` jobs."""
    from sweeper.trial.plan import finetune_epochs

    most = max((finetune_epochs(job[0].compression) for job in composed if not isinstance(job, Exception)), default=0)
    publish_equal_budget(most)  # read by the jobs (this process, or launchers' workers it starts)
    log.info("compare.equal_budget: compression=none trains %d more epochs (the longest fine-tuning of the grid)", most)
    return most


def bad_jobs(jobs: list[list[str]], composed: list[Composed], *, extra_epochs: int | None = None) -> list[str]:
    """One line per job whose config fails to compose or plan; jobs that will FAIL are logged."""
    from sweeper.trial.plan import plan_trial

    bad: list[str] = []
    for index, (overrides, job) in enumerate(zip(jobs, composed, strict=True)):
        shown = " ".join(overrides) or "(no overrides)"
        try:
            if isinstance(job, Exception):
                raise job
            plan = plan_trial(job[0], choices=job[1], extra_epochs=extra_epochs)
        except Exception as exc:  # ConfigError, or a composition error: bad input either way
            bad.append(f"job {index} ({shown}): {one_line(exc)}")
            continue
        if plan.unsupported is not None:
            log.warning("job %d (%s) will fail: %s", index, shown, plan.unsupported)
    return bad
