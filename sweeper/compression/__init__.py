"""Model-structure optimization: the `compression` config group.

A compression method is a small object with one method, ``compress(model, ctx)``, that
takes the trained network and returns a :class:`Compressed`: the module that runs, the
artifact to write (kind + payload, see :mod:`sweeper.artifact`), its own metrics and tags.
Optional capabilities are typed protocols, checked once by the trial: :class:`TrainsWithHooks`
(``training_hooks(ctx)``: methods that act during training, such as gradual pruning and
distillation; the hooks come back to ``compress`` as ``ctx.hooks``) and :class:`ChecksModel`
(``check(model, ctx)`` before training: ``ValueError`` for bad settings, :class:`UnsupportedLayer`
for a layer the method cannot handle, which fails that trial only).

Each method states its facts where it is defined (:class:`MethodFacts`: its family, its relation
to training, whether its output is final, what it needs); the trial, pipeline, report, help and tests
read them. Each method's module registers the loader of the artifact kind it writes (``sparse``,
``structured``, ``int8``, ``packed``); an artifact names that module, so ``load_artifact``
imports only the one it needs; the methods below are imported on first use (PEP 562), so
``import sweeper.compression`` stays cheap.
See ``docs/compression.md`` for the options, their knobs and the measured results.
"""

from __future__ import annotations

import importlib
from typing import Any

from sweeper.compression import _base
from sweeper.compression._base import *  # noqa: F403  (the contract, listed in _base.__all__)

# The one list of built-in methods: class -> its module. Each class declares its own facts
# (``facts``: family, relation to training, ...); the options that configure them are conf/compression/*.yaml.
METHODS = {
    "AWQ": "_awq",
    "Distillation": "_distill",
    "GPTQ": "_gptq",
    "GradualPruning": "_prune",
    "Int8Quantization": "_quantize",
    "LowRank": "_lowrank",
    "Magnitude": "_wanda",
    "MagnitudePruning": "_prune",
    "MixedPrecision": "_mixed",
    "NoCompression": "_none",
    "Pipeline": "_pipeline",
    "QuantizationAwareTraining": "_qat",
    "RandomPruning": "_prune",
    "RoundToNearest": "_rtn",
    "SparseGPT": "_sparsegpt",
    "StructuredPruning": "_structured",
    "Wanda": "_wanda",
}

__all__ = [*METHODS, "METHODS", *_base.__all__]


def __getattr__(name: str) -> Any:
    """Import a method's module when the method is first asked for (``sweeper.compression.Pipeline``)."""
    if name in METHODS:
        return getattr(importlib.import_module(f"sweeper.compression.{METHODS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
