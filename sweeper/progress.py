"""Progress of trials on the console: a live line on a terminal, one line per trial otherwise.

In a grid multirun each trial's closing line also says where the sweep stands: trials done
and left, time elapsed, the estimated time left and the best validation score so far, e.g.
``trial 2/4 optimizer=sgd: test_accuracy 0.91 ... | 2/4 done, 8 s, ~8 s left, best val 0.93 (trial 1)``.
Under ``CI=true`` or when stdout is no terminal, nothing is redrawn: one line per trial.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

__all__ = ["SweepStanding", "TrialProgress", "end_live_line", "quiet_launch_lines"]

_log = logging.getLogger("sweeper")
_live_line_open = False  # a live line is on screen without its newline (an interruption starts a new line)


def end_live_line(stream: TextIO | None = None) -> None:
    """End a live progress line, so that what is printed next (an interruption) starts on its own line."""
    global _live_line_open
    if _live_line_open:
        (stream or sys.stdout).write("\n")
        (stream or sys.stdout).flush()
        _live_line_open = False


@dataclass
class SweepStanding:
    """What this process has seen of its multirun: the best validation score and which trial had it."""

    best_score: float = math.nan
    best_trial: int | None = None

    def update(self, index: int, score: float | None, *, higher_is_better: bool = True) -> None:
        """Keep ``score`` if it beats the best so far (lower beats higher for a perplexity)."""
        if score is None or not math.isfinite(score):
            return
        better = score > self.best_score if higher_is_better else score < self.best_score
        if self.best_trial is None or better:
            self.best_score, self.best_trial = score, index

    def describe(self, index: int, total: int, *, started: float | None = None, now: float | None = None) -> str:
        """``2/4 done, 8 s, ~8 s left, best val 0.93 (trial 1)`` for the ``index``-th of ``total`` trials of a
        sweep that ``started`` then (``time.time()``; unknown: no times)."""
        parts = [f"{index}/{total} done"]
        if started:
            elapsed = (now or time.time()) - started
            parts.append(_duration(elapsed))
            if index < total:
                parts.append(f"~{_duration(elapsed / index * (total - index))} left")
        if self.best_trial is not None:
            parts.append(f"best val {self.best_score:.4f} (trial {self.best_trial})")
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 2 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


_standing = SweepStanding()  # one per process: the trials this process ran


class TrialProgress:
    """Prints ``trial i/N <label> epoch e/E loss val`` as training goes, then a summary line."""

    def __init__(
        self,
        label: str,
        epochs: int,
        *,
        index: int | None = None,
        total: int | None = None,
        metric: str = "accuracy",
        stream: TextIO | None = None,
        live: bool = False,
        sweep_started: float | None = None,
        higher_is_better: bool = True,
    ) -> None:
        self.stream = stream or sys.stdout
        self.metric = metric  # the task's primary metric: its lines name it (val_ndcg_at_10)
        self.live = live  # a redrawn line (a terminal, not CI): the caller knows
        self.sweep_started = sweep_started
        self.higher_is_better = higher_is_better
        position = f"{index}/{total}" if index is not None and total else (str(index) if index else "")
        self.prefix = f"trial {position} {label}".replace("  ", " ").strip()
        self.epochs = epochs
        self.index, self.total = index, total

    def _write(self, text: str, *, end: str = "\n") -> None:
        global _live_line_open
        self.stream.write(("\r\033[K" if self.live else "") + f"{self.prefix}: {text}{end}")
        self.stream.flush()
        _live_line_open = self.live and not end

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """One epoch done: the live line is redrawn; without one, a DEBUG line (``debug=verbose`` shows it)."""
        text = (
            f"epoch {epoch + 1}/{self.epochs} loss {metrics['train_loss']:.4f} "
            f"val_{self.metric} {metrics['val_score']:.4f}"
        )
        if self.live:
            self._write(text, end="")
        elif _log.isEnabledFor(logging.DEBUG):
            _log.debug("%s: %s", self.prefix, text)

    def _standing(self, score: float | None) -> str:
        """The sweep's standing after this trial (a grid multirun only)."""
        if self.index is None or not self.total:
            return ""
        _standing.update(self.index, score, higher_is_better=self.higher_is_better)
        return f" | {_standing.describe(self.index, self.total, started=self.sweep_started)}"

    def done(self, metrics: Mapping[str, float]) -> None:
        self._write(
            f"test_{self.metric} {metrics['test_score']:.4f} size {metrics['size_bytes'] / 1024:.1f} KiB "
            f"latency {_latency(metrics['latency_ms'])} epochs {int(metrics['epochs_run'])} "
            f"({metrics['train_seconds']:.1f} s)" + self._standing(metrics.get("val_score"))
        )

    def skipped(self, run_id: str, score: float | None = None) -> None:
        self._write(f"already finished (run {run_id}), skipped" + self._standing(score))

    def pruned(self, reason: str) -> None:
        self._write(f"PRUNED {reason}")

    def failed(self, reason: str) -> None:
        self._write(f"FAILED {reason}" + self._standing(None))


class _LaunchLines:
    """A logging filter that drops Hydra's launch lines (``Launching N jobs``, ``#0 : overrides``)."""

    def filter(self, record: object) -> bool:
        message = str(getattr(record, "msg", ""))
        return not (message.startswith("Launching ") or message.lstrip().startswith("#"))


_LAUNCHER_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
)


def quiet_launch_lines(*, live: bool) -> None:
    """Without a live line (off a terminal, or under CI) each trial says what it runs in its own line:
    Hydra's launch lines go."""
    if not live:
        for name in _LAUNCHER_LOGGERS:
            logging.getLogger(name).addFilter(_LaunchLines())


def _latency(ms: float) -> str:
    """A trial's latency estimate, or where the latency will come from when it did not time itself."""
    return "timed by the report" if math.isnan(ms) else f"{ms:.3f} ms"
