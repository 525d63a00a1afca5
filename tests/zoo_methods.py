"""A compression method of a user's own, written against the public contract only (``sweeper.compression``
and ``sweeper.artifact``): Deep Compression's weight sharing (Han et al., 2016), each layer's weights
clustered by k-means to ``2**bits`` shared values, stored as one code per weight plus a codebook.

``tests/zoo_conf/compression/weight_sharing.yaml`` makes it an option (``compression=weight_sharing`` with
``--config-dir tests/zoo_conf``); it declares its own family, which the package does not know.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sweeper.artifact import ModelSpec, register_loader
from sweeper.compression import Compressed, CompressionContext, MethodFacts

_KIND = "shared"  # this artifact kind's loader is registered below; the artifact names this module


def kmeans(weight: Tensor, k: int, iterations: int) -> tuple[Tensor, Tensor]:
    """(codes, centroids) of ``weight``'s values, centroids started evenly over the range (the paper's
    linear initialisation)."""
    values = weight.detach().flatten()
    centroids = torch.linspace(float(values.min()), float(values.max()), k)
    for _ in range(iterations):
        codes = (values[:, None] - centroids[None, :]).abs().argmin(dim=1)
        for c in range(k):
            members = values[codes == c]
            if len(members):
                centroids[c] = members.mean()
    codes = (values[:, None] - centroids[None, :]).abs().argmin(dim=1)
    return codes.to(torch.uint8).view_as(weight), centroids


class WeightSharing:
    """Cluster every Linear and Conv weight to ``2**bits`` shared values; no retraining.

    Args:
        bits: 1..8; the codebook holds ``2**bits`` values per layer.
        iterations: k-means iterations.
    """

    facts: ClassVar[MethodFacts] = MethodFacts("weight sharing", "post-training")

    def __init__(self, *, bits: int = 4, iterations: int = 8) -> None:
        if not (isinstance(bits, int) and 1 <= bits <= 8):
            raise ValueError(f"compression.bits={bits}: allowed: integers 1..8")
        self.bits, self.iterations = bits, iterations

    def compress(self, model: nn.Module, ctx: CompressionContext) -> Compressed:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        codes: dict[str, Tensor] = {}
        codebooks: dict[str, Tensor] = {}
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
                key = f"{name}.weight" if name else "weight"
                codes[key], codebooks[key] = kmeans(module.weight, 2**self.bits, self.iterations)
                with torch.no_grad():
                    module.weight.copy_(codebooks[key][codes[key].long()])
                del state[key]
        payload = {"codes": codes, "codebooks": codebooks, "rest": state}
        return Compressed(model, _KIND, payload, latency_kind="simulated", metrics={"bits": float(self.bits)})


@register_loader(_KIND)
def load_shared(spec: ModelSpec, payload: dict[str, Any]) -> nn.Module:
    """Rebuild the network and give each clustered weight its codebook's values."""
    state = dict(payload["rest"])
    for key, code in payload["codes"].items():
        state[key] = payload["codebooks"][key][code.long()]
    model = spec.build()
    model.load_state_dict(state)
    return model
