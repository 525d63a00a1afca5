"""Training parity: the framework's ``compression=none`` score against a plain PyTorch loop, seed by seed.

    python scripts/bench_parity.py [--tasks digits,synthetic,bio] [--seeds 10] [--out bench_parity.md]

For each task and seed, the same data split (the task built by its config), the same network initialised
from the same seed, the same optimizer and learning rate, batch size, number of epochs and constant LR are
trained twice: once by the framework (:func:`sweeper.trial.run.run`, tracking off) and once by a reference
loop written here the way a practitioner writes it (``DataLoader(shuffle=True)`` with its own generator, the
last partial batch kept, ``model.train()`` / ``model.eval()``, the test split scored at the end). The two
shuffle differently, so their scores differ seed by seed; what must not differ is their mean: the mean paired
difference (framework - reference, percentage points) with its 95 % t-interval, which should contain 0 or
lie within +-0.3 pp. Each task: digits (the default CNN), generated data (an MLP), peptides (the bio
preset's 1-D CNN, AUC).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sweeper.configs import plain_dict
from sweeper.report.stats import mean_interval
from sweeper.scoring import evaluate_scores
from sweeper.trial.context import JobContext
from sweeper.trial.run import run

TASKS = {
    "digits": ["strategy.epochs=20"],
    "synthetic": ["data=synthetic", "model=mlp", "strategy.epochs=20"],
    "bio": ["experiment=bio"],
}


def reference(cfg: DictConfig, seed: int) -> float:
    """The plain loop's test score for ``cfg`` at ``seed``."""
    task = instantiate(cfg.data, seed=seed)
    torch.manual_seed(seed)  # the network's initialisation, as the framework seeds it
    kwargs = {k: v for k, v in plain_dict(cfg.model).items() if k != "checkpoint"}
    model = instantiate(kwargs, input_shape=list(task.input_shape), num_classes=task.num_classes)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    loader = DataLoader(
        TensorDataset(task.x_train, task.y_train),
        batch_size=int(cfg.strategy.batch_size),
        shuffle=True,
        generator=torch.Generator().manual_seed(1000 + seed),  # a shuffle stream of its own
    )
    loss_fn = task.loss or (lambda logits, _x, y: nn.functional.cross_entropy(logits, y))
    for _ in range(int(cfg.strategy.epochs)):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), x, y).backward()
            optimizer.step()
    model.eval()
    return evaluate_scores(model, task.x_test, task.y_test, task.metrics, input_ndim=len(task.input_shape))[
        task.score_metric
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench_parity.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "| task | metric | seeds | framework (mean) | plain loop (mean) | paired difference, pp [95 % CI] | within |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.tasks.split(","):
        diffs, ours, theirs = [], [], []
        for seed in range(args.seeds):
            with initialize_config_module("sweeper.conf", version_base="1.3"):
                cfg = compose("config", [*TASKS[name], f"seed={seed}", "tracking.enabled=false", "base.reuse=false"])
            result = run(cfg, JobContext.standalone(Path(tempfile.mkdtemp(prefix="parity-"))))
            a, b = result.metrics["test_score"], reference(cfg, seed)
            ours.append(a)
            theirs.append(b)
            diffs.append(100 * (a - b))
            print(f"{name} seed {seed}: framework {a:.4f} plain {b:.4f}", flush=True)
        mean, low, high = mean_interval(diffs)
        ok = low <= 0 <= high or (low >= -0.3 and high <= 0.3)
        metric = result.plan.task.score_metric
        lines.append(
            f"| {name} | {metric} | {args.seeds} | {statistics.fmean(ours):.4f} | {statistics.fmean(theirs):.4f} | "
            f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] | {'yes' if ok else 'NO'} |"
        )
        print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
