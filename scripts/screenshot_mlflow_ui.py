"""Screenshots of the MLflow UI after a real sweep, for docs/tracking.md (headless Chromium).

Runs a small grid (2 optimizers x 2 seeds on the built-in digits, the recommended model
registered) in a scratch directory, starts ``mlflow ui`` on its store, and captures:

* ``docs/img/mlflow_runs.png``: the experiment's runs as a fresh browser profile opens them from the address
  the sweep printed (model training, sweeper's view: score, size, latency), the parent run expanded;
* ``docs/img/mlflow_sweep_run.png``: the parent run: the recommendation as its description, the report;
* ``docs/img/mlflow_trial_run.png``: one trial: its datasets, its logged model, its metrics;
* ``docs/img/mlflow_trial_metrics.png``: that trial's charts (curves of the per-epoch metrics).

Needs Chromium (``apt-get install chromium``) and Playwright (``pip install -e ".[docs]"``).

    python scripts/screenshot_mlflow_ui.py [--out docs/img] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sweeper.tracking.ui import runs_page

SWEEP = ["-m", "optimizer=adam,sgd", "seed=0,1", "strategy.epochs=5", "report.register=true"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mlflow_ui(store: Path) -> Iterator[str]:
    """``mlflow ui`` on ``store`` until the block ends; yields its address."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store}", "--port", str(port)],
        cwd=store.parent,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job workers: GenAI judges only
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: its workers end with it
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a busy machine starts it slowly
        while True:
            try:
                with urllib.request.urlopen(f"{address}/health", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow ui did not answer on {address}") from None
                time.sleep(0.5)
        yield address
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _check_runs_page(page: Any) -> None:
    """The runs page a fresh profile opens from that address: model training, score, size and latency as columns."""
    headers = {h.inner_text().strip() for h in page.locator("[role=columnheader]").all()}
    missing = {"test_score", "size_bytes", "latency_ms"} - headers
    if missing or page.get_by_text("Evaluation runs", exact=True).count():  # GenAI's sidebar has it
        raise RuntimeError(f"the runs page is not sweeper's view (columns missing: {sorted(missing)}; {page.url})")


def capture(address: str, experiment_id: str, sweep_run: str, trial_run: str, out: Path, chromium: str) -> list[Path]:
    """The screenshots; returns their paths."""
    from playwright.sync_api import sync_playwright

    shots = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1500, "height": 700}).new_page()  # a fresh browser profile
        page.goto(runs_page(address, experiment_id))  # the address a multirun prints at its end
        page.wait_for_timeout(4000)
        page.locator("[aria-label*='Close' i]").first.click()  # the assistant's panel
        page.wait_for_timeout(500)
        _check_runs_page(page)
        page.locator("button[data-component-id*='runnamecellrenderer']").first.click()  # expand the sweep's run
        page.wait_for_timeout(1500)
        shots.append(out / "mlflow_runs.png")
        page.screenshot(path=shots[-1])
        page.set_viewport_size({"width": 1500, "height": 1500})  # run pages scroll inside their own panel
        for run_id, name in ((sweep_run, "mlflow_sweep_run.png"), (trial_run, "mlflow_trial_run.png")):
            page.goto(f"{address}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning")
            page.wait_for_timeout(4000)
            shots.append(out / name)
            page.screenshot(path=shots[-1])
        page.get_by_text("Model metrics", exact=True).first.click()  # the trial's curves: per-epoch metrics
        page.wait_for_timeout(3000)
        shots.append(out / "mlflow_trial_metrics.png")
        page.screenshot(path=shots[-1])
        browser.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from mlflow import MlflowClient

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sweeper-ui-") as scratch:
        work = Path(scratch)
        subprocess.run([sys.executable, "-m", "sweeper", *SWEEP], cwd=work, check=True)
        client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("sweeper")
        assert experiment is not None, "the sweep created no experiment"
        experiment_id = experiment.experiment_id
        (sweep,) = client.search_runs([experiment_id], "tags.sweeper_role = 'sweep'")
        trial = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{sweep.info.run_id}'")[0]
        with mlflow_ui(work / "mlflow.db") as address:
            for path in capture(address, experiment_id, sweep.info.run_id, trial.info.run_id, args.out, args.chromium):
                print(f"wrote {path}")


if __name__ == "__main__":
    main()
