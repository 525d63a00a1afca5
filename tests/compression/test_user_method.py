"""A compression method of a user's own (``tests/zoo_methods.py`` + ``tests/zoo_conf/compression/weight_sharing.yaml``):
it passes the package's contract suite by subclassing it, as a user's test would."""

from __future__ import annotations

from conftest import ZOO_CONF

from sweeper.testing import CompressionContract
from sweeper.trial.run import TrialResult


class TestAUsersWeightSharing(CompressionContract):
    overrides = ("compression=weight_sharing", "compression.bits=3")
    config_dir = str(ZOO_CONF)
    family = "weight sharing"  # a family of the method's own: the package does not know it
    min_ratio = 3.0  # one byte per weight instead of four, plus the codebooks and the rest
    latency_kind = "simulated"  # the shared values run on dense kernels

    def test_each_clustered_layer_holds_at_most_two_to_the_bits_values(self, trial: TrialResult):
        shared = trial.deployed.compressed.payload["codebooks"]
        state = trial.deployed.module.state_dict()
        assert shared and all(state[key].unique().numel() <= 2**3 for key in shared)
