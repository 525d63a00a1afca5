"""One trial's training across processes: data-parallel (DDP) workers started by ``torch.distributed.run``'s engine.

``nproc=N`` (N > 1): the trial's process plans the trial as always, then :func:`train_data_parallel` starts N
workers through torchelastic's launcher (what ``torchrun --standalone --nproc-per-node N`` runs: a c10d
rendezvous on a free local port). Every worker plans the same trial from the resolved config, loads the
network's initial weights from the trial's process (so N processes start from the same weights as one), joins
the process group (gloo on CPU, NCCL on GPUs: one device per worker) and trains with the ordinary loop, which
shares every step's examples among the processes (:mod:`sweeper.training.loop`). Rank 0 writes the trained
weights and the history; the trial's process loads them and goes on alone: one MLflow run, one artifact. A
failure of any rank fails the trial with that rank's error.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from sweeper.training import Strategy, TrainResult

__all__ = ["DataParallelFailed", "train_data_parallel"]

_WEIGHTS, _INITIAL = "trained.pt", "initial.pt"


class DataParallelFailed(RuntimeError):
    """A worker of a data-parallel training failed; the message is its error."""


def train_data_parallel(plan: Any, strategy: Strategy | None = None) -> TrainResult:
    """Train ``plan.model`` in place with ``plan.nproc`` data-parallel workers; return rank 0's result.

    ``plan``: a :class:`~sweeper.trial.plan.TrialPlan`; ``strategy``: the plan's unless given.

    Raises:
        DataParallelFailed: a worker failed (the message names its rank and its error).
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    with tempfile.TemporaryDirectory(prefix="sweeper-ddp-") as scratch:
        folder = Path(scratch)
        torch.save({k: v.detach().cpu() for k, v in plan.model.state_dict().items()}, folder / _INITIAL)
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=plan.nproc,
            run_id=uuid.uuid4().hex,
            rdzv_backend="c10d",
            rdzv_endpoint="localhost:0",  # a free port: trials on one machine never collide
            max_restarts=0,  # a failed rank fails the trial; the sweep decides what comes next
            monitor_interval=0.1,
            start_method="spawn",
        )
        job = {
            "cfg": OmegaConf.to_container(plan.cfg, resolve=True),
            "choices": dict(plan.choices),
            "strategy": strategy or plan.strategy,
            "folder": str(folder),
        }
        with _quiet_launcher():
            try:
                elastic_launch(config, _worker)(job)
            except Exception as exc:
                raise DataParallelFailed(_first_error(folder, exc)) from exc
        entry = torch.load(folder / _WEIGHTS, map_location="cpu", weights_only=True)
    plan.model.load_state_dict(entry["state_dict"])
    plan.model.to(plan.device)
    return TrainResult(**entry["result"])


def _worker(job: dict[str, Any]) -> None:
    """One rank: join the process group, plan the trial, start from the trial's initial weights, train."""
    from torch import distributed as dist

    from sweeper.training import train
    from sweeper.trial.plan import plan_trial

    cfg = OmegaConf.create(job["cfg"])
    cuda = str(cfg.device).startswith("cuda") or (str(cfg.device) == "auto" and torch.cuda.is_available())
    dist.init_process_group("nccl" if cuda else "gloo")  # rank and world from the launcher
    rank = dist.get_rank()  # one machine: the local rank too
    folder = Path(job["folder"])
    try:
        if cfg.get("threads") is not None:
            torch.set_num_threads(int(cfg.threads))
        torch.use_deterministic_algorithms(True, warn_only=True)
        plan = plan_trial(cfg, choices=job["choices"])
        device = torch.device("cuda", rank) if cuda else plan.device
        if cuda:
            torch.cuda.set_device(device)
        plan.model.load_state_dict(torch.load(folder / _INITIAL, map_location="cpu", weights_only=True))
        result = train(plan.model, plan.task, plan.optimizer_factory, job["strategy"], seed=plan.seed, device=device)
        if rank == 0:
            state = {k: v.detach().cpu() for k, v in plan.model.state_dict().items()}
            torch.save({"state_dict": state, "result": asdict(result)}, folder / _WEIGHTS)
    except BaseException as exc:
        (folder / f"rank{rank}.error").write_text(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        raise
    finally:
        dist.destroy_process_group()


def _first_error(folder: Path, exc: Exception) -> str:
    """The failing rank's error as one line (the first written: the others may be its consequences), else the
    launcher's."""
    for path in sorted(folder.glob("rank*.error"), key=lambda p: p.stat().st_mtime_ns):
        return f"data-parallel rank {path.stem.removeprefix('rank')} failed: {path.read_text()}"
    return f"data-parallel training failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """The launcher's lines (rendezvous, worker groups, its multi-line failure dump) are not the user's business."""
    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.distributed.launcher")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)  # a rank's error is reported once, as the trial's
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
