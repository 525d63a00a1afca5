"""Progress of trials on the console: a live line on a terminal, one line per trial otherwise."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

__all__ = ["TrialProgress"]


def _interactive(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("CI")


class TrialProgress:
    """Prints ``trial i/N <label> epoch e/E loss val`` as training goes, then a summary line."""

    def __init__(self, label: str, epochs: int, *, index: int | None = None, total: int | None = None,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = _interactive(self.stream)
        position = f"{index}/{total}" if index is not None and total else (str(index) if index else "")
        self.prefix = f"trial {position} {label}".replace("  ", " ").strip()
        self.epochs = epochs

    def _write(self, text: str, *, end: str = "\n") -> None:
        self.stream.write(("\r\033[K" if self.live else "") + f"{self.prefix}: {text}{end}")
        self.stream.flush()

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self.live:
            self._write(f"epoch {epoch + 1}/{self.epochs} loss {metrics['train_loss']:.4f} "
                        f"val_accuracy {metrics['val_accuracy']:.4f}", end="")

    def done(self, metrics: Mapping[str, float]) -> None:
        self._write(f"test_accuracy {metrics['test_accuracy']:.4f} size {metrics['size_bytes'] / 1024:.1f} KiB "
                    f"latency {metrics['latency_ms']:.3f} ms epochs {int(metrics['epochs_run'])} "
                    f"({metrics['train_seconds']:.1f} s)")

    def skipped(self, run_id: str) -> None:
        self._write(f"already finished (run {run_id}), skipped")

    def pruned(self, reason: str) -> None:
        self._write(f"PRUNED {reason}")

    def failed(self, reason: str) -> None:
        self._write(f"FAILED {reason}")
