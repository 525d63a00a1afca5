"""A trial's artifact as an MLflow model: ``mlflow.pyfunc.load_model`` serves it with the project's loader.

Each tracked trial logs its reloaded artifact (``model.pt``) as an MLflow 3 *logged model*
(the run's **Models** tab) in the pyfunc flavour with this module as its loader, an input
signature and an input example taken from the test split::

    >>> import mlflow                                                  # doctest: +SKIP
    >>> model = mlflow.pyfunc.load_model("models:/m-0123...")          # doctest: +SKIP
    >>> logits = model.predict(x)                                      # doctest: +SKIP

The model id is the run's tag ``model_id``; ``runs:/<run id>/model`` loads it too.
Serving it needs ``sweeper`` and the model's own ``_target_`` importable, as for any artifact.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["ArtifactModel", "log_trial_model"]

MODEL_NAME = "model"  # the logged model's name (its path under the run's artifacts is the same)


class ArtifactModel:
    """A loaded artifact behind pyfunc's ``predict``: an array of inputs in, the logits out."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.as_tensor(np.asarray(model_input))).numpy()


def _load_pyfunc(data_path: str) -> ArtifactModel:
    """The pyfunc loader MLflow calls with the logged ``model.pt``."""
    from sweeper.artifact import load_artifact

    return ArtifactModel(load_artifact(Path(data_path)))


def _requirements() -> list[str]:
    import mlflow

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"]


def log_trial_model(
    client: MlflowClient, experiment_id: str, run_id: str, artifact: Path, example: torch.Tensor, module: nn.Module
) -> str:
    """Log ``artifact`` as the run's MLflow model (signature and example from ``example``); return its model id."""
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import infer_signature

    inputs = example.cpu().numpy()
    with torch.no_grad():
        outputs = module(example.cpu()).numpy()
    logged = client.create_logged_model(experiment_id, name=MODEL_NAME, source_run_id=run_id)
    try:
        with tempfile.TemporaryDirectory(prefix="sweeper-model-") as scratch:
            local = Path(scratch) / MODEL_NAME
            mlflow.pyfunc.save_model(
                str(local),
                loader_module=__name__,
                data_path=str(artifact),
                signature=infer_signature(inputs, outputs),
                input_example=inputs,
                pip_requirements=_requirements(),
            )
            client.log_model_artifacts(logged.model_id, str(local))
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    client.finalize_logged_model(logged.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])  # the run's "Logged models"
    return str(logged.model_id)
