"""What a multirun looks like from one of its jobs: the grid's size, the swept keys, the fixed overrides.

The grid check (:mod:`sweeper.sweep.preflight`) expands the grid exactly as Hydra's basic sweeper does
(command-line sweeps and ``hydra.sweeper.params``, e.g. an ``experiment`` preset's) and hands
its layout to every job (:func:`sweeper.trial.context.publish_grid`). Elsewhere (an Optuna search,
the check switched off) it is read from the command line (:func:`from_command_line`).

Example:
    >>> layout = from_jobs([["optimizer=adam", "strategy.epochs=5"], ["optimizer=sgd", "strategy.epochs=5"]])
    >>> layout.size, sorted(layout.swept), layout.fixed_overrides()
    (2, ['optimizer'], 'strategy.epochs=5')
    >>> layout.label(["optimizer=sgd", "strategy.epochs=5"])
    'optimizer=sgd'
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SweepLayout", "from_command_line", "from_jobs"]

# Not part of what a sweep compares (seeds repeat a configuration; the rest is bookkeeping).
_NOT_FIXED = ("seed", "resume", "fail_fast")
_NOT_FIXED_PREFIXES = ("hydra.", "hydra/", "tracking.", "report.")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


@dataclass(frozen=True)
class SweepLayout:
    """A multirun's grid: ``size`` jobs (None when it cannot be told), ``swept`` keys, ``fixed`` overrides."""

    size: int | None
    swept: frozenset[str]
    fixed: tuple[str, ...]

    def fixed_overrides(self) -> str:
        """The fixed overrides that define the configuration space, sorted, space-separated.

        Logged as the tag ``fixed_overrides``: a sweep dir re-run with other fixed overrides
        holds two configuration spaces, which the report tells apart by it. Seeds, Hydra's,
        tracking's and the report's settings, ``resume`` and ``fail_fast`` are left out.
        """
        kept = [o for o in self.fixed if _key(o) not in _NOT_FIXED and not _key(o).startswith(_NOT_FIXED_PREFIXES)]
        return " ".join(sorted(kept))

    def label(self, overrides: Sequence[str]) -> str:
        """A job's name from its overrides: the swept ones, else all of them."""
        varying = [o for o in overrides if _key(o) in self.swept]
        return " ".join(varying or overrides)


def from_jobs(jobs: Sequence[Sequence[str]]) -> SweepLayout:
    """The layout of a grid given as the override lists of its jobs."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job:
            values.setdefault(_key(override), set()).add(override)
    swept = frozenset(key for key, seen in values.items() if len(seen) > 1)
    common = set(jobs[0]).intersection(*map(set, jobs[1:])) if jobs else set()
    return SweepLayout(len(jobs), swept, tuple(sorted(o for o in common if _key(o) not in swept)))


@functools.cache
def from_command_line(argv: tuple[str, ...]) -> SweepLayout:
    """The layout the command line's own sweeps (``optimizer=adam,sgd``) describe, parsed once per process."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = OverridesParser.create().parse_overrides([a for a in argv if "=" in a and not a.startswith("-")])
    except Exception:  # not ours to report: Hydra has already accepted these overrides
        return SweepLayout(None, frozenset(), ())
    swept = [o for o in overrides if o.is_sweep_override()]
    size: int | None = 1
    for override in swept:
        try:
            count = len(list(override.sweep_string_iterator()))
        except Exception:  # a sweep Hydra expands itself (glob, interval for a custom sweeper)
            size = None
            break
        size = size * count if size is not None else None
    fixed = tuple(str(o.input_line) for o in overrides if not o.is_sweep_override())
    return SweepLayout(size, frozenset(o.get_key_element() for o in swept), fixed)
