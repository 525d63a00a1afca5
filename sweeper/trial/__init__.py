"""One trial: its job context, its plan (every component built and checked), its stages and measurements.

Read top to bottom: :mod:`~sweeper.trial.context` (what the job knows of its sweep, built once at the
entry point), :mod:`~sweeper.trial.plan` (data, model, optimizer, strategy and compression method, built
and checked; :mod:`~sweeper.trial.knobs` applies per-option knobs), :mod:`~sweeper.trial.run` (train,
compress, export, reload, measure, track; returns a :class:`~sweeper.trial.run.TrialResult`),
:mod:`~sweeper.trial.measure` and :mod:`~sweeper.trial.runtimes` (PyTorch and ONNX Runtime).
"""
