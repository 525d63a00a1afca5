"""Which family each `compression` option belongs to: the one table the report reads."""

from __future__ import annotations

__all__ = ["BASELINE", "FAMILIES", "family_of"]

BASELINE = "none"

FAMILIES: dict[str, str] = {
    "none": "baseline",
    "prune": "pruning",
    "prune_random": "pruning",
    "prune_structured": "pruning",
    "prune_gradual": "pruning",
    "quantize": "quantization",
    "qat": "quantization",
    "distill": "distillation",
    "pipeline": "pipeline",
}

_PREFIXES = {
    "prune": "pruning",
    "quant": "quantization",
    "qat": "quantization",
    "distill": "distillation",
    "pipeline": "pipeline",
}


def family_of(option: object) -> str:
    """Family of a `compression` option: the table above, else by name prefix, else ``other``.

    Example:
        >>> family_of("prune_structured"), family_of("quantize_int4"), family_of("my.Method")
        ('pruning', 'quantization', 'other')
    """
    name = str(option)
    if name in FAMILIES:
        return FAMILIES[name]
    for prefix, family in _PREFIXES.items():
        if name.startswith(prefix):
            return family
    return "other"
