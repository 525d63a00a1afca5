"""MLflow: writing a trial's run and a sweep's parent run, reading the results back as pandas DataFrames.

:mod:`~sweeper.tracking.runs` (one run per trial, few calls), :mod:`~sweeper.tracking.parent`
(a sweep's parent run), :mod:`~sweeper.tracking.results` (``load_runs``, ``load_history``: what the
report and notebooks read), :mod:`~sweeper.tracking.serving` (the artifact as an MLflow pyfunc model),
:mod:`~sweeper.tracking.reachability` (a store that does not answer fails in seconds),
:mod:`~sweeper.tracking.upload` (a finished trial's results kept on disk when the store was away, logged later).
"""
