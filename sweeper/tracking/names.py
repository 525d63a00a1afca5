"""Run names that tell runs apart where the MLflow UI shows them: in their first 20 characters.

MLflow's runs table cuts a name after about 20 characters. A name that starts with what all
runs share (``sweep multirun/2026-12-03/...``, ``compression=none seed=0`` beside
``compression=none seed=1``) shows the same text on every row; these names start with what
differs instead: a sweep's parent run with the time it started, a trial with the values of the
overrides that make it what it is, shortest first. The full story stays in the runs' tags (``sweep_id``,
``sweep_dir``, ``command``, the chosen options) and params.

Example:
    >>> trial_run_name("compression=prune seed=1")
    'seed=1 prune'
    >>> from datetime import datetime
    >>> sweep_run_name("python -m sweeper -m optimizer=adam,sgd", "multirun/x", datetime(2026, 12, 3, 9, 5, 7))
    '09:05:07 optimizer=adam,sgd · multirun/x'
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from datetime import datetime

__all__ = ["MAX_LENGTH", "sweep_run_name", "trial_run_name"]

MAX_LENGTH = 250  # MLflow keeps longer names, but nobody reads them in a table
# Leaves that name nothing on their own (strategy.lr_schedule.name=cosine reads as lr_schedule.name=cosine).
_GENERIC_LEAVES = frozenset({"name", "enabled", "value", "type", "kind", "mode", "_target_"})
_LITERAL = re.compile(r"^([-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?|true|false|null|inf|nan)$", re.IGNORECASE)
_SWEEP_FUNCTIONS = ("range(", "choice(", "interval(", "glob(", "tag(")


def _split(token: str) -> tuple[str, str] | None:
    """``(key, value)`` of an override ``key=value`` (``+``/``++``/``~`` dropped), else ``None``."""
    if "=" not in token or token.startswith("-"):
        return None
    key, value = token.split("=", 1)
    key = key.lstrip("+~")
    return (key, value) if key else None


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key's shortest tail that is not a generic word alone and that no other key ends with."""
    short: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        n = 1
        for n in range(1, len(parts) + 1):
            if n == 1 and len(parts) > 1 and parts[-1] in _GENERIC_LEAVES:
                continue
            if not any(other != key and other.split(".")[-n:] == parts[-n:] for other in keys):
                break
        short[key] = ".".join(parts[-n:])
    return short


def trial_run_name(label: str) -> str:
    """A trial's run name from its label (the overrides that set it apart, space-separated): their values first.

    Numbers and flags come first with a short key, the shortest tail of the dotted key that reads on its
    own (``seed=1``, ``optimizer.lr=0.05``: ``lr=0.05``, ``strategy.lr_schedule.gamma=0.5``: ``gamma=0.5``),
    then the options chosen in config groups by their value alone (``compression=prune_structured``:
    ``prune_structured``; ``strategy.lr_schedule.name=cosine``: ``lr_schedule.name=cosine``), each kind
    in the label's order: the short words that differ most often fit before the table cuts the name.
    Words that are no override (a search trial's ``#3``, a label made of the choices) lead as they are.

    Example:
        >>> trial_run_name("compression=prune_structured seed=2")
        'seed=2 prune_structured'
        >>> trial_run_name("optimizer=sgd optimizer.lr=0.05 strategy.lr_schedule.name=cosine")
        'lr=0.05 sgd lr_schedule.name=cosine'
        >>> trial_run_name("#3 optimizer.lr=0.0012 strategy.epochs=7")
        '#3 lr=0.0012 epochs=7'
    """
    tokens = label.split()
    pairs = [_split(token) for token in tokens]
    short = _short_keys([pair[0] for pair in pairs if pair is not None and "." in pair[0]])
    plain, numbers, options = [], [], []
    for token, pair in zip(tokens, pairs, strict=True):
        if pair is None:
            plain.append(token)
            continue
        key, value = pair
        if _LITERAL.match(value):
            numbers.append(f"{short.get(key, key)}={value}")
        elif "." in key:  # a string knob
            options.append(f"{short[key]}={value}")
        else:  # an option of a config group (or a top-level word such as device=cpu)
            options.append(value)
    return " ".join(plain + numbers + options)[:MAX_LENGTH] or label[:MAX_LENGTH]


def _is_sweep(value: str) -> bool:
    return "," in value or value.startswith(_SWEEP_FUNCTIONS)


def sweep_run_name(command: str, sweep_id: str, started: datetime) -> str:
    """A sweep's parent run name: the time it started, what its command line set (swept keys first), its id.

    Hydra's own settings (``hydra.*``, ``hydra/...``) and flags are left out of the middle part;
    a sweep of the defaults (``-m experiment=...`` in a preset) shows what the command line has.

    Example:
        >>> command = "python -m sweeper -m strategy.epochs=2 compression=none,prune hydra.sweep.dir=d"
        >>> sweep_run_name(command, "d", datetime(2026, 1, 2, 13, 4, 5))
        '13:04:05 compression=none,prune strategy.epochs=2 · d'
    """
    try:
        tokens = shlex.split(command)
    except ValueError:  # an unbalanced quote: the words as they are
        tokens = command.split()
    overrides = []
    for token in tokens:
        pair = _split(token)
        if pair is not None and not pair[0].startswith(("hydra.", "hydra/")):
            overrides.append((pair, token))
    swept = [token for (_, value), token in overrides if _is_sweep(value)]
    fixed = [token for (_, value), token in overrides if not _is_sweep(value)]
    what = " ".join(swept + fixed) or "defaults"
    name = f"{started:%H:%M:%S} {what}"
    if sweep_id:
        name = f"{name} · {sweep_id}"
    return name[:MAX_LENGTH]
