"""Pareto fronts and hypervolume, all objectives minimized (negate what is maximized).

Exact and simple: n (configurations of a sweep) is small, so dominance is checked pairwise
and the hypervolume is computed by slicing along the last objective, recursively.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["dominates", "dominators", "hypervolume", "pareto_mask"]


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (minimization)."""
    return bool(np.all(a <= b) and np.any(a < b))


def dominators(points: ArrayLike) -> list[list[int]]:
    """For each point, the indices of the points that dominate it (empty on the front)."""
    values = np.asarray(points, dtype=float)
    return [[j for j in range(len(values)) if dominates(values[j], values[i])] for i in range(len(values))]


def pareto_mask(points: ArrayLike) -> np.ndarray:
    """Boolean mask of the non-dominated points of an ``(n, d)`` array (ties all stay).

    Example:
        >>> pareto_mask([[1, 2], [2, 1], [2, 2]]).tolist()
        [True, True, False]
    """
    return np.array([not found for found in dominators(points)], dtype=bool)


def hypervolume(points: ArrayLike, reference: ArrayLike) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimization, any dimension).

    Points not strictly better than the reference in every objective add nothing.

    Example:
        >>> hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4])
        6.0
    """
    ref = np.asarray(reference, dtype=float)
    values = np.asarray(points, dtype=float).reshape(-1, len(ref))
    values = values[np.all(values < ref, axis=1)]
    return _volume(values, ref)


def _volume(values: np.ndarray, ref: np.ndarray) -> float:
    if len(values) == 0:
        return 0.0
    if len(ref) == 1:
        return float(ref[0] - values[:, 0].min())
    order = np.argsort(values[:, -1], kind="stable")
    values = values[order]
    bounds = np.append(values[1:, -1], ref[-1])
    total = 0.0
    for i, upper in enumerate(bounds):
        depth = upper - values[i, -1]
        if depth > 0:  # the slab [z_i, z_next) is dominated by the points with z <= z_i
            total += depth * _volume(values[: i + 1, :-1], ref[:-1])
    return float(total)
