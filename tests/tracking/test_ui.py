"""What the MLflow UI opens on: the experiment's saved view of score, size and latency, in model-training mode."""

from __future__ import annotations

import json

from sweeper.tracking.runs import experiment_id, writing_client
from sweeper.tracking.ui import VIEW_TAG, runs_page

# What MLflow's runs page reads from a saved view's state: its search facets and its table's settings.
_UI_STATE_KEYS = {
    *("searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter", "modelVersionFilter"),
    *("datasetsFilter", "selectedColumns", "columnOrder", "columnWidths", "runsHiddenMode", "groupBy"),
}


def _view(tags: dict[str, str]) -> tuple[dict, dict]:
    envelope = json.loads(tags[VIEW_TAG])
    return envelope, json.loads(envelope["state"])


def test_a_new_experiment_carries_a_view_with_score_size_and_latency_columns(tracking_uri):
    from mlflow.utils.validation import MAX_EXPERIMENT_TAG_VAL_LENGTH

    client = writing_client(tracking_uri)
    tags = client.get_experiment(experiment_id(client, "sweeper")).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    envelope, state = _view(tags)
    assert envelope["name"] == "sweeper: score, size, latency" and isinstance(envelope["createdAt"], int)
    assert isinstance(envelope["state"], str) and len(tags[VIEW_TAG]) <= MAX_EXPERIMENT_TAG_VAL_LENGTH
    assert {"metrics.`test_score`", "metrics.`size_bytes`", "metrics.`latency_ms`"} <= set(state["selectedColumns"])
    assert set(state) <= _UI_STATE_KEYS


def test_the_view_is_shaped_as_mlflows_own_saved_views():
    from mlflow.demo.generators.saved_views import DEMO_TRACE_V4_SAVED_VIEW, _serialize_trace_saved_view

    from sweeper.tracking.ui import saved_view

    theirs = json.loads(_serialize_trace_saved_view(DEMO_TRACE_V4_SAVED_VIEW, 1))
    assert set(theirs) <= set(json.loads(saved_view(1)))  # name, createdAt, state (a string)


def test_an_experiment_made_elsewhere_gets_the_view_and_keeps_its_own_tags(tracking_uri):
    client = writing_client(tracking_uri)
    made = client.create_experiment("theirs", tags={"mlflow.experimentKind": "genai_development", "team": "a"})
    assert experiment_id(client, "theirs") == made
    tags = client.get_experiment(made).tags
    assert tags["mlflow.experimentKind"] == "genai_development" and tags["team"] == "a"  # theirs to choose
    assert "metrics.`test_score`" in _view(tags)[1]["selectedColumns"]


def test_the_runs_page_opens_in_model_training_mode_on_the_view():
    local = runs_page("sqlite:///mlflow.db", "3")
    assert local == "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning&viewStateShareKey=sweeper"
    assert runs_page("https://mlflow.example.org/", "7").startswith("https://mlflow.example.org/#/experiments/7/runs?")
