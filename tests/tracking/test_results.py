"""Reading results back: one row per trial with its family, and the tables a method measured."""

from __future__ import annotations

import pandas as pd

from sweeper.tracking.results import load_runs, load_table
from sweeper.tracking.runs import TrialRun


def test_a_trial_reads_back_with_its_family_and_a_table_it_kept(tracking_uri, tmp_path):
    tags = {"sweep_id": "s", "compression": "mixed", "family": "quantization", "optimizer": "adam"}
    table = pd.DataFrame({"layer": ["fc.weight"], "bits": [4], "sparsity": [0.5], "drop": [0.01]})
    table.to_csv(tmp_path / "sensitivity.csv", index=False)
    with TrialRun(tracking_uri, "sweeper", run_name="t", tags=tags) as run:
        run.log_params({"seed": 0})
        run.log_results({"test_score": 0.9, "size_bytes": 1000.0})
        run.log_artifacts([tmp_path / "sensitivity.csv"])
    (row,) = load_runs("sweeper", sweep_id="s", tracking_uri=tracking_uri).itertuples()
    assert row.family == "quantization" and row.compression == "mixed" and row.test_score == 0.9
    pd.testing.assert_frame_equal(load_table(row.run_id, "sensitivity", tracking_uri=tracking_uri), table)
    assert load_table(row.run_id, "allocation", tracking_uri=tracking_uri) is None  # the run kept none
