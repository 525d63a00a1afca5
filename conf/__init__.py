"""Hydra configs of sweeper (a package so that `pkg://sweeper.conf` resolves when installed)."""
