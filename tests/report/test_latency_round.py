"""The end-of-sweep latency round: networks timed side by side, compared within each round."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweeper.report.latency_round import RoundNetwork, interleaved_round, ratio_interval


def _mlp(hidden: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, hidden), nn.ReLU(), nn.Linear(hidden, 10)).eval()


def test_a_wider_network_ranks_slower_than_the_baseline_within_each_round():
    x = torch.randn(64, 256)
    networks = [RoundNetwork("base", _mlp(256), x[:1], x), RoundNetwork("wide", _mlp(4096), x[:1], x)]
    times = interleaved_round(networks, rounds=4, block_seconds=0.02)
    assert {k: len(v["batch1"]) for k, v in times.items()} == {"base": 4, "wide": 4}  # one block per round each
    ratio, low, _ = ratio_interval(times["wide"]["batch"], times["base"]["batch"])
    assert ratio > 2 and low > 1  # 16x the multiply-adds: slower beyond the interval, loose bounds
    same, low_same, high_same = ratio_interval(times["base"]["batch1"], times["base"]["batch1"])
    assert same == 1.0 and low_same == high_same == 1.0


def test_fewer_than_two_rounds_have_no_interval():
    ratio, low, high = ratio_interval([2.0], [1.0])
    assert ratio == 2.0 and low != low and high != high  # NaN bounds: no claim either way


def test_a_run_whose_latency_nobody_timed_is_failed_with_the_reason():
    import pandas as pd

    from sweeper.report.grouping import classify

    runs = pd.DataFrame(
        {
            "status": ["FINISHED", "FINISHED"],
            "test_score": [0.9, 0.9],
            "size_bytes": [1000.0, 1000.0],
            "latency_ms": [float("nan"), 0.1],
            "latency_measured": ["not timed", "estimate"],
        }
    )
    outcome = classify(runs)
    assert outcome["outcome"].tolist() == ["failed", "ok"]
    assert "left it to the report's latency round" in outcome.at[0, "reason"]
    assert classify(runs, required=("test_score", "size_bytes"))["outcome"].tolist() == ["ok", "ok"]  # before the round


@pytest.mark.filterwarnings("error::DeprecationWarning")  # pandas 4 raises where 3 warns: a column made by .at
def test_the_round_fills_latency_columns_the_trials_never_logged():
    import pandas as pd

    from sweeper.report.latency_round import ONNX_SUFFIX, apply_round

    runs = pd.DataFrame({"run_id": ["a"], "latency_measured": ["not timed"]})  # no latency column at all
    keys = pd.Series(["net"], index=runs.index)
    times = {
        "net": {"batch1": [0.25, 0.75], "batch": [0.25, 0.5]},
        f"net{ONNX_SUFFIX}": {"batch1": [0.1], "batch": [0.02]},
    }
    timed = apply_round(runs, keys, times)
    assert timed.at[0, "latency_ms"] == 0.5 and timed.at[0, "latency_ms_batch"] == 0.375
    assert timed.at[0, "latency_ms_onnxruntime"] == 0.1 and timed.at[0, "latency_source"] == "interleaved"
