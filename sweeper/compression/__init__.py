"""Model-structure optimization: the `compression` config group.

A compression method is a small object with one method, ``compress(model, ctx)``, that
takes the trained network and returns a :class:`Compressed`: the module that runs, the
artifact to write (kind + payload, see :mod:`sweeper.artifact`) and its own metrics.
Methods that act during training (gradual pruning, distillation) also expose
``training_hooks(ctx)``; methods whose input checks need the model expose
``check(model, ctx)``, called before training.

Importing this package registers the loader of every artifact kind it writes
(``sparse``, ``structured``, ``int8``, ``packed``), so ``load_artifact`` works after it.
See ``docs/compression.md`` for the options, their knobs and the measured results.
"""

from sweeper.compression._base import CompressionContext, CompressionMethod, Compressed, TrainingHooks
from sweeper.compression._distill import Distillation
from sweeper.compression._none import NoCompression
from sweeper.compression._pipeline import Pipeline
from sweeper.compression._prune import GradualPruning, MagnitudePruning, RandomPruning
from sweeper.compression._qat import QuantizationAwareTraining
from sweeper.compression._quantize import Int8Quantization
from sweeper.compression._structured import StructuredPruning

__all__ = [
    "CompressionContext",
    "CompressionMethod",
    "Compressed",
    "Distillation",
    "GradualPruning",
    "Int8Quantization",
    "MagnitudePruning",
    "NoCompression",
    "Pipeline",
    "QuantizationAwareTraining",
    "RandomPruning",
    "StructuredPruning",
    "TrainingHooks",
]
