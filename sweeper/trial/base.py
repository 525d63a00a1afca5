"""The base network of a trial: its network after the main training run, before compression.

A base depends on the data, the model (and the checkpoint it starts from), the optimizer, the
strategy, the seed, the device and the code of the training loop, not on the compression method. So
each distinct base is trained once per cache directory (``base.cache_dir``) and reused by every method
that starts from a trained network (its facts: ``post-training`` or ``fine-tunes``): a grid of 7
methods x 3 seeds trains 3 networks, not 21. Methods that change the main training run itself
(``in-training``: gradual pruning, distillation) train their own. Workers on one machine, or on
several sharing the directory, serialize on the entry's lock (:func:`sweeper.cache.compute_once`): the
first trains, the others wait and load; a failed or interrupted training publishes nothing.

The key is a SHA-256 of everything that shapes the trained weights: the data, model, optimizer and
strategy configs as resolved, the task's tensors (and a streamed training split's fingerprint: its files'
paths, sizes and modification times), the network's initial weights (a checkpoint's
included), the seed, the device, the CPU threads, the torch version and the source of the training loop.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

import sweeper.training as training_package
from sweeper.compression import TrainingHooks
from sweeper.configs import plain_dict
from sweeper.data import stream_fingerprint
from sweeper.training import TrainResult, train
from sweeper.training.loop import EpochHook
from sweeper.trial.plan import TrialPlan

__all__ = ["Base", "base_key", "obtain_base", "train_network"]

Origin = Literal["trained", "reused", "checkpoint"]


@dataclass
class Base:
    """Where a trial's trained network came from.

    ``result`` is the base's training (its per-epoch history, epochs, steps, best validation score;
    ``train_seconds`` its own training time); ``seconds`` what this trial spent getting it (training,
    or loading a reused one); ``trained_by`` the MLflow run that trained a reused base.
    """

    origin: Origin
    result: TrainResult
    seconds: float
    trained_by: str | None = None


def _digest_tensors(digest: hashlib._Hash, tensors: dict[str, Tensor]) -> None:
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def _training_code() -> str:
    """A digest of the training loop's source: a change to it trains another base."""
    digest = hashlib.sha256()
    for path in sorted(Path(training_package.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def base_key(plan: TrialPlan) -> str:
    """The key of ``plan``'s base: the same for every method of the same data, model, training and seed."""
    cfg = plan.cfg
    digest = hashlib.sha256()
    settings = {
        "data": plain_dict(cfg.data),
        "model": plain_dict(cfg.model),
        "optimizer": plain_dict(cfg.optimizer),
        "strategy": asdict(plan.strategy),
        "seed": plan.seed,
        "device": plan.device.type,
        "threads": cfg.get("threads"),
        **({"nproc": plan.nproc} if plan.nproc > 1 else {}),  # data parallel: per-process batch statistics differ
        "torch": torch.__version__,
        "training_code": _training_code(),
        "train_stream": None if plan.task.train_stream is None else stream_fingerprint(plan.task.train_stream),
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    task = plan.task
    _digest_tensors(
        digest, {"x_train": task.x_train, "y_train": task.y_train, "x_val": task.x_val, "y_val": task.y_val}
    )
    _digest_tensors(digest, plan.model.state_dict())  # the initial weights: the model's code and a checkpoint's
    return digest.hexdigest()


def obtain_base(
    plan: TrialPlan, *, cache_dir: str | Path | None, run_id: str | None = None, epoch_hook: EpochHook | None = None
) -> Base:
    """Train ``plan.model`` in place, or load the base another trial trained; ``cache_dir=None``: always train.

    A base loaded from the cache replays its history through ``epoch_hook``, so the run's curves are its
    base's. A checkpoint with ``strategy.epochs=0`` is the base as it is.
    """
    start = time.perf_counter()
    if plan.checkpoint is not None and plan.strategy.epochs == 0:
        result = train_network(plan, epoch_hook)
        return Base("checkpoint", result, time.perf_counter() - start)
    if cache_dir is None:
        result = train_network(plan, epoch_hook)
        return Base("trained", result, time.perf_counter() - start)
    from sweeper.cache import compute_once

    trained_here: list[TrainResult] = []

    def make(tmp: Path) -> None:
        result = train_network(plan, epoch_hook)
        state = {k: v.detach().cpu() for k, v in plan.model.state_dict().items()}
        torch.save({"state_dict": state, "result": asdict(result), "run_id": run_id or ""}, tmp)
        trained_here.append(result)

    path = compute_once(Path(cache_dir) / f"{base_key(plan)}.pt", make)
    if trained_here:
        return Base("trained", trained_here[0], time.perf_counter() - start)
    entry = torch.load(path, map_location="cpu", weights_only=True)
    plan.model.load_state_dict(entry["state_dict"])
    plan.model.to(plan.device)
    result = TrainResult(**entry["result"])
    for epoch, metrics in enumerate(result.history):
        if epoch_hook is not None:
            epoch_hook(epoch, metrics)
    return Base("reused", result, time.perf_counter() - start, trained_by=entry["run_id"] or None)


def train_network(plan: TrialPlan, epoch_hook: EpochHook | None, hooks: TrainingHooks | None = None) -> TrainResult:
    """Train ``plan.model`` in place by the plan's optimizer and strategy (with a method's training ``hooks``).

    ``plan.nproc > 1``: data-parallel workers train it (:mod:`sweeper.trial.parallel`), and the epochs are
    replayed through ``epoch_hook`` when they are done.
    """
    if plan.nproc > 1 and plan.strategy.epochs > 0:
        from sweeper.trial.parallel import train_data_parallel

        result = train_data_parallel(plan)
        for epoch, metrics in enumerate(result.history):
            if epoch_hook is not None:
                epoch_hook(epoch, metrics)
        return result
    return train(
        plan.model,
        plan.task,
        plan.optimizer_factory,
        plan.strategy,
        seed=plan.seed,
        device=plan.device,
        loss_fn=hooks.loss_fn if hooks else None,
        step_hook=hooks.step_hook if hooks else None,
        epoch_hook=epoch_hook,
    )
