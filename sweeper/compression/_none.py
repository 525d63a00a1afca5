from __future__ import annotations

from typing import ClassVar

from torch import nn

from sweeper.artifact import dense_payload
from sweeper.compression._base import Compressed, CompressionContext, MethodFacts


class NoCompression:
    """The baseline: the trained network saved as dense fp32 weights."""

    facts: ClassVar[MethodFacts] = MethodFacts("baseline", "post-training")

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        # the payload shares the network's tensors: nothing changes them after (no second copy of a large network)
        return Compressed(module=model, kind="dense", payload=dense_payload(model, copy=False))
