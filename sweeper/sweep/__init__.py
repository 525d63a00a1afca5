"""The sweep as a whole: Hydra callbacks at the start and end of a multirun.

:mod:`~sweeper.sweep.preflight` plans every job of a grid before the first one trains;
:mod:`~sweeper.sweep.parent_run` opens the sweep's parent run in MLflow and closes it with its summary.
The report (:mod:`sweeper.report`) is the last callback.
"""
