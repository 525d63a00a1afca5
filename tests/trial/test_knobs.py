"""Knobs scoped to one option of a group (``+options.compression.qat.bits=4``)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module

from sweeper.errors import ConfigError
from sweeper.metrics import GROUPS
from sweeper.trial.knobs import apply_option_knobs


def _job(*overrides: str):
    """A job's config and choices, composed as a launcher would (Hydra stays initialized while in use)."""
    cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    return cfg, dict(cfg.hydra.runtime.choices)


@pytest.fixture(autouse=True)
def _hydra():
    with initialize_config_module("sweeper.conf", version_base="1.3"):
        yield


def test_a_knob_reaches_only_the_trials_of_its_option():
    knob = "+options.compression.qat.bits=2"
    qat, choices = _job("compression=qat", knob)
    assert qat.compression.bits == 4  # the option's default, until applied
    apply_option_knobs(qat, choices, GROUPS)
    assert qat.compression.bits == 2
    none, choices = _job("compression=none", knob)
    before = dict(none.compression)
    apply_option_knobs(none, choices, GROUPS)
    assert dict(none.compression) == before  # none has no bits: left alone, no error


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "+options.compression.qat.bitz=4",
            "options.compression.qat.bitz: compression=qat has no key bitz; its keys: bits, ",
        ),
        (
            "+options.compression.qta.bits=4",
            "options.compression.qta: no such compression option; allowed: awq, distill, gptq, lowrank,",
        ),
        ("+options.compresion.qat.bits=4", "options.compresion: not a config group; allowed: data, model, optimizer"),
    ],
)
def test_a_wrong_group_option_or_key_is_one_line_naming_it(override, message):
    cfg, choices = _job("compression=qat", override)
    with pytest.raises(ConfigError) as error:
        apply_option_knobs(cfg, choices, GROUPS)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
