"""Command line: ``python -m sweeper [overrides]`` (one trial) or ``-m`` (a multirun).

The Hydra task function builds the job's context (:func:`sweeper.trial.context.job_context`, the one
place that reads Hydra's runtime config and the environment a sweep hands its jobs) and calls
:func:`sweeper.trial.run.run` with it. A trial that fails is logged
(FAILED in MLflow, one line here) and the multirun goes on, unless ``fail_fast=true``. A trial
pruned by the Optuna sweeper raises ``optuna.TrialPruned`` through to the sweeper.

Exit status: 0 every trial finished; 1 some trial failed (the others are kept; counted in
this process, so jobs that a parallel launcher runs in other processes are not counted);
2 bad input (one line per problem, nothing trained); 130 interrupted.
``HYDRA_FULL_ERROR=1`` shows tracebacks.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import hydra
from omegaconf import DictConfig

log = logging.getLogger("sweeper")
_failed_trials = 0  # trials of this process that raised (the exit status says so at the end)


@hydra.main(version_base="1.3", config_path="pkg://sweeper.conf", config_name="config")
def _task(cfg: DictConfig) -> dict[str, float] | None:
    from sweeper.errors import ConfigError
    from sweeper.search.trial_context import is_pruned
    from sweeper.trial.context import job_context
    from sweeper.trial.run import run

    try:
        return run(cfg, job_context(cfg)).metrics
    except ConfigError as exc:  # bad input: one line, exit status 2, stop the sweep
        if os.environ.get("SWEEPER_SHOW_TRACEBACK") == "1":
            raise
        print(f"sweeper: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:
        if is_pruned(exc):
            raise  # the Optuna sweeper records the trial PRUNED (the MLflow run says so already)
        global _failed_trials
        _failed_trials += 1
        if cfg.get("fail_fast", False):
            raise
        log.debug("trial failed", exc_info=exc)  # the console line and the MLflow run already say why
        return None  # the sweep goes on


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the process like Ctrl-C: the running trial is closed as KILLED."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _register_sweeper_plugin() -> None:
    """Make ``hydra/sweeper=optuna`` known however the project is installed: Hydra finds plugins by
    listing the ``hydra_plugins`` directories, which an editable install's import hook does not expose."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.sweeper_optuna.optuna_sweeper import OptunaSweeper  # stores its config on import

    Plugins.instance().register(OptunaSweeper)


def _methods_by_family() -> str:
    """The ``compression`` options grouped by the family each method declares (``--help``)."""
    from sweeper.trial.plan import compression_options

    families: dict[str, list[str]] = {}
    for name, facts in compression_options().items():
        families.setdefault(facts.family, []).append(name)
    ordered = sorted(families.items(), key=lambda item: (item[0] != "baseline", item[0]))
    return "\n".join(f"{' ' * 15}{family}: {', '.join(names)}" for family, names in ordered)


def _register_help_resolver() -> None:
    """``${sweeper_methods:}`` in the help text: read from the methods' own facts when ``--help`` shows it."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("sweeper_methods"):
        OmegaConf.register_new_resolver("sweeper_methods", _methods_by_family)


def main(task: Callable[[], Any] | None = None) -> None:
    """Console entry point (``sweeper`` and ``python -m sweeper``); ``task``: another Hydra app of the
    package's config (``python -m sweeper.sensitivity``), with the same errors and exit statuses."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sweeper.errors import ConfigError, one_line

    signal.signal(signal.SIGTERM, _terminate)
    # At exit, the interpreter's last garbage collections would walk every object that torch, MLflow and
    # pandas made (~0.7 million after a sweep: seconds of silence, more on a busy machine). Registered before
    # the libraries' own exit handlers, this runs after them (last in, first out) and leaves those objects
    # out of the collections; what a run wrote is already in the store and in closed files.
    atexit.register(gc.freeze)
    _register_sweeper_plugin()
    _register_help_resolver()
    _quiet_libraries()
    show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["SWEEPER_SHOW_TRACEBACK"] = "1" if show_traceback else "0"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them in one line
    try:
        (task or _task)()
    except KeyboardInterrupt:
        from sweeper.progress import end_live_line

        end_live_line()  # the message goes on its own line, not onto a trial's live line
        _end_sweep_run("KILLED")
        print("sweeper: interrupted; the current trial is marked KILLED, finished trials are kept", file=sys.stderr)
        _say_how_to_go_on()
        sys.exit(130)
    except SystemExit:
        _end_sweep_run("KILLED")
        raise
    except (ConfigError, HydraException, OmegaConfBaseException) as exc:
        _end_sweep_run("FAILED")
        if show_traceback:
            raise
        print(f"sweeper: error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        _end_sweep_run("FAILED")
        if show_traceback:
            raise
        print(
            f"sweeper: error: {type(exc).__name__}: {one_line(exc)} (HYDRA_FULL_ERROR=1 shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
    if _failed_trials:
        plural = "s" if _failed_trials > 1 else ""
        print(
            f"sweeper: {_failed_trials} trial{plural} failed (failure_reason in MLflow); finished trials are kept",
            file=sys.stderr,
        )
        sys.exit(1)


def _quiet_libraries() -> None:
    """MLflow's and Alembic's INFO lines off, unless ``-v`` (taken off the command line) or ``hydra.verbose``."""
    from sweeper.trial.context import quiet_mlflow

    verbose = any(a in ("-v", "--verbose") for a in sys.argv[1:])
    sys.argv[1:] = [a for a in sys.argv[1:] if a not in ("-v", "--verbose")]
    verbose = verbose or any(a.lstrip("+").startswith("hydra.verbose") for a in sys.argv[1:])
    quiet_mlflow(verbose=verbose)
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _say_how_to_go_on() -> None:
    """After an interrupted multirun: the command that resumes it, and the one that reports what finished."""
    from sweeper.trial.context import last_job

    job = last_job()
    if job is None or not job.multirun:
        return
    args = " ".join(a for a in sys.argv[1:] if not a.startswith("hydra.sweep.dir="))
    print(f"sweeper: resume it: python -m sweeper {args} hydra.sweep.dir={job.sweep_dir}", file=sys.stderr)
    if job.sweep_id:
        print(f"sweeper: report what finished: python -m sweeper.report --sweep {job.sweep_id}", file=sys.stderr)


def _end_sweep_run(status: str) -> None:
    """A multirun that stopped early leaves its parent run KILLED or FAILED, not RUNNING (no-op without one)."""
    from sweeper.errors import one_line
    from sweeper.sweep.parent_run import close_sweep_run

    try:
        close_sweep_run(status)
    except Exception as exc:  # the store itself may be what failed: say so, keep the exit status
        print(f"sweeper: warning: the sweep's MLflow run was not closed: {one_line(exc)}", file=sys.stderr)


if __name__ == "__main__":
    main()
