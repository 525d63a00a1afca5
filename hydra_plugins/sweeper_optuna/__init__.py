"""Hydra sweeper plug-in: an Optuna 5 search (``hydra/sweeper=optuna``). See ``docs/search.md``."""
