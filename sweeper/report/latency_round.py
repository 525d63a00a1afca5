"""The latency round at the end of a sweep: every distinct deployed network timed side by side.

A trial's own latency is measured alone, at whatever speed the host's CPU ran at that moment;
the host changes speed by up to 2x for seconds at a time, so two trials' numbers differ by
more than many real differences. Here every distinct network of the sweep (one per network
key, :func:`sweeper.report.grouping.network_keys`) is reloaded from its MLflow artifact and
timed in **interleaved rounds**: each round times one short block of every network in turn
(starting one further along each round), at batch 1 and at the larger batch. A network's
latency is its median over the rounds; two networks compare by the ratio of their times
*within each round*, whose interval over rounds says whether a difference is real.

Example:
    >>> ratio, low, high = ratio_interval([2.0, 2.2, 1.8], [1.0, 1.1, 0.9])
    >>> round(ratio, 2), round(low, 2), round(high, 2)
    (2.0, 2.0, 2.0)
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from sweeper.report.stats import mean_interval

__all__ = [
    "ONNX_ROUND_COLUMN",
    "ONNX_SUFFIX",
    "RoundNetwork",
    "apply_round",
    "interleaved_round",
    "load_networks",
    "log_round",
    "ratio_interval",
]

ROUND_COLUMN = "latency_rounds"  # per run: its network's per-round batch-1 times (ms), the report's comparisons
ONNX_ROUND_COLUMN = "latency_rounds_onnxruntime"  # the same for its ONNX Runtime export (measure.runtimes)
ONNX_SUFFIX = "|onnxruntime"  # a network key's ONNX Runtime twin, timed in the same rounds
_ROUND_METRICS = ("latency_ms", "latency_ms_batch", "latency_ms_onnxruntime", "latency_ms_batch_onnxruntime")
ROUND_TAG = "latency round"  # ``latency_measured`` of a trial whose latency the round logged


@dataclass
class RoundNetwork:
    """One distinct deployed network: the module, an input at batch 1 and one at the larger batch."""

    key: str
    module: nn.Module
    single: Tensor
    batch: Tensor


def _block_ms(module: nn.Module, x: Tensor, seconds: float) -> float:
    """Median milliseconds per sample of ``module(x)`` over one short timed block (one thread)."""
    from torch.utils import benchmark

    timer = benchmark.Timer(
        stmt="with torch.inference_mode(): model(x)", globals={"model": module, "x": x, "torch": torch}, num_threads=1
    )
    return 1000.0 * timer.blocked_autorange(min_run_time=seconds).median / len(x)


def interleaved_round(
    networks: Sequence[RoundNetwork], *, rounds: int = 5, block_seconds: float = 0.05
) -> dict[str, dict[str, list[float]]]:
    """Time every network once per round, in turn; ``{key: {"batch1": [ms per round], "batch": [...]}}``."""
    times: dict[str, dict[str, list[float]]] = {n.key: {"batch1": [], "batch": []} for n in networks}
    for network in networks:  # warm-up: first calls allocate and pack
        network.module.eval()
        _block_ms(network.module, network.single, block_seconds / 5)
    for r in range(rounds):
        order = [*networks[r % len(networks) :], *networks[: r % len(networks)]] if networks else []
        for network in order:
            times[network.key]["batch1"].append(_block_ms(network.module, network.single, block_seconds))
            times[network.key]["batch"].append(_block_ms(network.module, network.batch, block_seconds))
    return times


def ratio_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """``a / b`` from times measured in the same rounds: the geometric mean of the per-round ratios
    and its 95 % t-interval (on their logarithms); NaN bounds with fewer than two rounds."""
    logs = [math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0 and y > 0]
    mean, low, high = mean_interval(logs)
    return math.exp(mean) if logs else math.nan, math.exp(low), math.exp(high)


def _task_inputs(config: dict[str, Any], batch: int) -> tuple[Tensor, Tensor]:
    """Test inputs of the run's task (rebuilt from its data config and seed): one sample, and ``batch``."""
    from hydra.utils import instantiate

    task = instantiate(config["data"], seed=int(config.get("seed", 0)))
    examples = task.inputs("test")
    return examples[:1], examples[:batch]


def load_networks(runs: pd.DataFrame, keys: pd.Series, tracking_uri: str | None) -> list[RoundNetwork]:
    """One network per network key among the finished runs, reloaded from its run's ``model.pt``.

    Inputs come from the run's task, rebuilt once per distinct data config. A network whose
    artifact or task cannot be had is left out (its trials keep their own latency, if they timed one).
    """
    import yaml

    from sweeper.artifact import load_artifact
    from sweeper.tracking.runs import reading_client

    client = reading_client(tracking_uri)
    inputs: dict[str, tuple[Tensor, Tensor]] = {}
    networks = []
    ok = runs[runs["outcome"] == "ok"]
    with tempfile.TemporaryDirectory(prefix="sweeper-round-") as scratch:
        for key, group in ok.groupby(keys[ok.index], sort=False):
            run_id = str(group["run_id"].iloc[0])
            try:
                folder = Path(scratch) / run_id
                config = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml", str(folder))).read_text())
                module = load_artifact(Path(client.download_artifacts(run_id, "model.pt", str(folder))))
                data_key = json.dumps(config["data"], sort_keys=True) + str(config.get("seed"))
                batch = int(config.get("measure", {}).get("latency_batch", 256))
                if data_key not in inputs:
                    inputs[data_key] = _task_inputs(config, batch)
            except Exception:  # an artifact gone, a plug-in not importable here: its trials' own numbers, if any
                continue
            networks.append(RoundNetwork(str(key), module, *inputs[data_key]))
            exported = _onnx_session(client, run_id, folder, group)
            if exported is not None:
                networks.append(RoundNetwork(f"{key}{ONNX_SUFFIX}", exported, *inputs[data_key]))
    return networks


def _onnx_session(client: Any, run_id: str, folder: Path, group: pd.DataFrame) -> nn.Module | None:
    """The run's ONNX export in an ONNX Runtime session, when its trial measured one (else None)."""
    if "test_score_onnxruntime" not in group or group["test_score_onnxruntime"].isna().all():
        return None
    try:
        from sweeper.trial.runtimes import ONNX_FILE, OnnxModule

        return OnnxModule(client.download_artifacts(run_id, ONNX_FILE, str(folder)))  # read into memory here
    except Exception:  # no export logged, or no ONNX Runtime here: its trials' own numbers, if any
        return None


def apply_round(runs: pd.DataFrame, keys: pd.Series, times: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """``runs`` with each timed network's median latencies over the rounds, and its per-round times.

    Runs of networks not in the round keep their own, if they timed one (``latency_source`` says which).
    """
    runs = runs.copy()
    runs["latency_source"] = "per trial"
    runs[ROUND_COLUMN] = runs[ONNX_ROUND_COLUMN] = None
    for metric in _ROUND_METRICS:  # absent when no trial timed itself (the round's numbers go here)
        if metric not in runs:
            runs[metric] = math.nan
    for index in runs.index:
        for suffix, column, metric in (
            ("", ROUND_COLUMN, "latency_ms"),
            (ONNX_SUFFIX, ONNX_ROUND_COLUMN, "latency_ms_onnxruntime"),
        ):
            found = times.get(f"{keys[index]}{suffix}")
            if found and found["batch1"]:
                runs.at[index, metric] = statistics.median(found["batch1"])
                runs.at[index, metric.replace("latency_ms", "latency_ms_batch")] = statistics.median(found["batch"])
                runs.at[index, column] = list(found["batch1"])
                if not suffix:
                    runs.at[index, "latency_source"] = "interleaved"
    return runs


def log_round(runs: pd.DataFrame, tracking_uri: str | None) -> int:
    """Log the round's latencies to the runs whose trials did not time themselves; return how many.

    Their MLflow runs (the UI, :func:`sweeper.tracking.results.load_runs`) then show the latency users read
    in the report, tagged ``latency_measured=latency round``. A store that refuses the write keeps
    the report going (a warning); a trial's own estimate is never overwritten.
    """
    import logging

    from mlflow.entities import Metric, RunTag

    from sweeper.tracking.runs import resolve_tracking_uri, writing_client

    if "latency_measured" not in runs:
        return 0
    untimed = runs[(runs["latency_measured"] == "not timed") & (runs["latency_source"] == "interleaved")]
    if untimed.empty:
        return 0
    now = int(time.time() * 1000)
    try:
        client = writing_client(resolve_tracking_uri(tracking_uri))
        for _, row in untimed.iterrows():
            metrics = [Metric(m, float(row[m]), now, 0) for m in _ROUND_METRICS if m in row and pd.notna(row[m])]
            client.log_batch(str(row["run_id"]), metrics=metrics, tags=[RunTag("latency_measured", ROUND_TAG)])
    except Exception as exc:  # a read-only store, a server gone: the report has the numbers anyway
        logging.getLogger("sweeper").warning("the latency round's numbers were not logged to MLflow: %s", exc)
        return 0
    return len(untimed)
