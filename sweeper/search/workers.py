"""Several independent workers on one study, ending with exactly ``n_trials`` done trials.

Each worker (a ``python -m sweeper -m ...`` process with ``n_jobs=1``, on any machine) asks a
trial only while the done trials plus the trials *live* in other workers leave a free slot.
A trial is live while its worker refreshes the user attribute ``heartbeat`` (unix seconds,
every :data:`HEARTBEAT_SECONDS`); one whose heartbeat is older than ``stale_after`` seconds
(:data:`GRACE_SECONDS` by default) belongs to a worker that died (``kill -9``, a lost machine)
and is marked FAIL, so that it is replaced. Two workers asking the same free slot at the same moment are told apart by trial
number: the later one is a surplus, marked FAIL with ``surplus=True``, and not run.
This works with every Optuna storage (journal file, SQLite, PostgreSQL), since it only uses
user attributes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "DONE",
    "GRACE_SECONDS",
    "HEARTBEAT_ATTR",
    "HEARTBEAT_SECONDS",
    "fail_stale",
    "free_slots",
    "heartbeat",
    "is_surplus",
    "release_surplus",
]

HEARTBEAT_SECONDS = 5.0
GRACE_SECONDS = 30.0
DONE = (TrialState.COMPLETE, TrialState.PRUNED)  # the states that count towards n_trials
HEARTBEAT_ATTR = "heartbeat"


def _trials(study: optuna.Study, states: tuple[TrialState, ...]) -> list[FrozenTrial]:
    """The study's trials in ``states``, read from the storage itself.

    Optuna's per-process trial cache (in front of a database) can miss a trial that another
    process created concurrently; counting slots needs the storage's own view.
    """
    from optuna.storages._cached_storage import _CachedStorage

    storage = study._storage._backend if isinstance(study._storage, _CachedStorage) else study._storage
    return storage.get_all_trials(study._study_id, deepcopy=False, states=states)


def _last_beat(trial: FrozenTrial) -> float:
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    if beat is not None:
        return float(beat)
    return trial.datetime_start.timestamp() if trial.datetime_start else 0.0


STALE_REASON = "its worker stopped sending heartbeats"
OnStale = Callable[[FrozenTrial, str], None]


def fail_stale(
    study: optuna.Study,
    *,
    stale_after: float = GRACE_SECONDS,
    now: float | None = None,
    on_stale: OnStale | None = None,
) -> list[int]:
    """Mark FAIL the RUNNING trials whose last heartbeat is over ``stale_after`` seconds old; return their numbers.

    ``on_stale(trial, reason)`` is called for each (e.g. to close the trial's MLflow run).
    """
    now = time.time() if now is None else now
    stale = [t for t in _trials(study, (TrialState.RUNNING,)) if now - _last_beat(t) > stale_after]
    for trial in stale:
        optuna.trial.Trial(study, trial._trial_id).set_user_attr("failure_reason", STALE_REASON)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        if on_stale is not None:
            on_stale(trial, STALE_REASON)
    return [t.number for t in stale]


def free_slots(
    study: optuna.Study, n_trials: int, *, stale_after: float = GRACE_SECONDS, on_stale: OnStale | None = None
) -> tuple[int, int]:
    """(done trials, slots free for new trials) after failing stale ones; live trials take a slot."""
    fail_stale(study, stale_after=stale_after, on_stale=on_stale)
    trials = _trials(study, (*DONE, TrialState.RUNNING))
    done = sum(t.state in DONE for t in trials)
    return done, max(0, n_trials - len(trials))


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` came after ``n_trials`` trials that are done or live."""
    before = _trials(study, (*DONE, TrialState.RUNNING))
    return sum(t.number < number for t in before) >= n_trials


def release_surplus(study: optuna.Study, trials: Sequence[optuna.Trial], n_trials: int) -> list[optuna.Trial]:
    """The asked ``trials`` that may run; the others are marked FAIL (``surplus=True``)."""
    keep = []
    for trial in trials:
        if is_surplus(study, trial.number, n_trials):
            trial.set_user_attr("surplus", True)
            trial.set_user_attr("failure_reason", "surplus: other workers already run the last trials")
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        else:
            keep.append(trial)
    return keep


@contextmanager
def heartbeat(trials: Sequence[optuna.Trial], *, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Refresh the ``heartbeat`` attribute of ``trials`` now and every ``every`` seconds until exit."""
    stop = threading.Event()

    def beat() -> None:
        for trial in trials:
            if trial.study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())

    def loop() -> None:
        while not stop.wait(every):
            with contextlib.suppress(Exception):  # a storage hiccup: the next beat retries (GRACE_SECONDS)
                beat()

    beat()
    thread = threading.Thread(target=loop, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
