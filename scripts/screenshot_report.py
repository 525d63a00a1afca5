"""Screenshots of ``report.html`` at 1,280 px wide, for docs/report.md (headless Chromium).

Runs three small sweeps on the built-in digits task, each in its own scratch directory, and captures
the top of each report (the answer card, the warnings and the tables, down to the end of the ranking):

* ``docs/img/report_first_sweep.png``: the README's first sweep, ``-m optimizer=adam,sgd`` (one seed);
* ``docs/img/report_compression.png``: four methods x three seeds, ``-m compression=none,prune,quantize,qat
  seed=0,1,2`` (5 epochs);
* ``docs/img/report_lr_edge.png``: a one-seed grid of learning rates whose best is the largest tried
  (``-m optimizer.lr=0.0001,0.0003,0.001``, 5 epochs).

Each capture fails if the page is wider than the window (a table cut off). Needs Chromium
(``apt-get install chromium``) and Playwright (``pip install -e ".[docs]"``).

    python scripts/screenshot_report.py [--out docs/img] [--chromium /usr/bin/chromium] [--only compression]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH = 1280  # px: the window every table must fit
SWEEPS = {
    "first_sweep": ["-m", "optimizer=adam,sgd"],
    "compression": ["-m", "compression=none,prune,quantize,qat", "seed=0,1,2", "strategy.epochs=5"],
    "lr_edge": ["-m", "optimizer.lr=0.0001,0.0003,0.001", "strategy.epochs=5"],
}


def run_sweep(args: list[str], work: Path) -> Path:
    """Run one sweep in ``work``; return its report.html."""
    subprocess.run([sys.executable, "-m", "sweeper", *args], cwd=work, check=True)
    (page,) = work.glob("multirun/*/*/report/report.html")
    return page


def capture(page_path: Path, out: Path, chromium: str) -> None:
    """The report from its top to the end of its ranking, at :data:`WIDTH` px."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.goto(page_path.as_uri())
        wide = page.evaluate("document.documentElement.scrollWidth")
        if wide > WIDTH:
            raise RuntimeError(f"{page_path}: {wide} px wide, more than the {WIDTH} px window")
        box = page.locator("section.ranking").bounding_box()
        bottom = box["y"] + box["height"] + 16 if box else 900
        page.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": WIDTH, "height": bottom})
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--only", choices=sorted(SWEEPS), action="append", help="capture only these sweeps")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(SWEEPS):
        with tempfile.TemporaryDirectory(prefix="sweeper-report-") as scratch:
            page = run_sweep(SWEEPS[name], Path(scratch))
            path = args.out / f"report_{name}.png"
            capture(page, path, args.chromium)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
