"""The family of each run, as its method declared it (the run's tag ``family``), and the uncompressed option.

Each compression method states its family where it is defined (:class:`sweeper.compression.MethodFacts`);
every trial tags its run with it. The report reads that tag: a method of a user's appears under the family
it declares, and no table here repeats method names.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["UNCOMPRESSED", "UNCOMPRESSED_FAMILY", "UNKNOWN", "families"]

UNCOMPRESSED = "none"  # the compression option every other one is compared with
UNCOMPRESSED_FAMILY = "uncompressed"  # its family in the report ("baseline" is the task's reference only)
UNKNOWN = "other"  # a run without a declared family (a method that declares none)
_DECLARED = {"baseline": UNCOMPRESSED_FAMILY}  # what `none` declares, named as the report names it


def families(runs: pd.DataFrame) -> pd.Series:
    """The ``family`` tag of each run, ``other`` where a run has none; `none`'s is ``uncompressed``.

    Example:
        >>> families(pd.DataFrame({"family": ["pruning", None, "baseline"]})).tolist()
        ['pruning', 'other', 'uncompressed']
    """
    if "family" not in runs:
        return pd.Series(UNKNOWN, index=runs.index, dtype=object)
    return runs["family"].astype(object).where(runs["family"].notna(), UNKNOWN).replace(_DECLARED)
