"""``compression=rtn``: weight-only round-to-nearest on a grouped integer grid, the baseline every paper on
post-training quantization compares with (no calibration data)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from sweeper.compression._base import MethodFacts
from sweeper.compression._calibration import LinearStats
from sweeper.compression._lowbit import LowBitWeight, rtn
from sweeper.compression._posttraining import LowBitMethod

__all__ = ["RoundToNearest"]


class RoundToNearest(LowBitMethod):
    """Each weight rounded to the nearest level of its group's grid (:class:`LowBitMethod` for the knobs)."""

    facts: ClassVar[MethodFacts] = MethodFacts("quantization", "post-training", final=True)
    name = "rtn"
    needs_calibration = False

    def quantize(self, weight: Tensor, stats: LinearStats | None) -> tuple[LowBitWeight, Tensor | None]:
        return rtn(weight, **self.grid), None
