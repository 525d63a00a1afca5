"""The family of each run, as its method declared it (the run's tag ``family``), and the reference option.

Each compression method states its family where it is defined (:class:`sweeper.compression.MethodFacts`);
every trial tags its run with it. The report reads that tag: a method of a user's appears under the family
it declares, and no table here repeats method names.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["BASELINE", "UNKNOWN", "families"]

BASELINE = "none"  # the compression option every other one is compared with
UNKNOWN = "other"  # a run without a declared family (a method that declares none)


def families(runs: pd.DataFrame) -> pd.Series:
    """The ``family`` tag of each run, ``other`` where a run has none.

    Example:
        >>> families(pd.DataFrame({"family": ["pruning", None]})).tolist()
        ['pruning', 'other']
    """
    if "family" not in runs:
        return pd.Series(UNKNOWN, index=runs.index, dtype=object)
    return runs["family"].astype(object).where(runs["family"].notna(), UNKNOWN)
