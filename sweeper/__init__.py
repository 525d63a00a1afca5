"""sweeper: compare model-optimization methods in reproducible, tracked sweeps."""

__version__ = "0.1.0"
