"""The glossary: each term the report used, explained once, at the end."""

from __future__ import annotations

import pandas as pd

from sweeper.report.checks import EDGE_MIN_VALUES, NEAR_BASELINE
from sweeper.report.inputs import ReportInputs
from sweeper.report.recommend import LATENCY_NOISE
from sweeper.report.render import Section, Table
from sweeper.report.stats import score_label

__all__ = ["TITLE", "build", "entries"]

TITLE = "Glossary"


def entries() -> list[tuple[str, tuple[str, ...], str]]:
    """``(term, words that show it is used, explanation)``, in the order a reader meets them."""
    score = score_label()
    return [
        (
            "validation, test",
            ("validation",),
            f"Every choice (a learning rate, a family's best, the ranking, the answer) is made on the mean validation "
            f"{score} over seeds, carved from the training data; the test {score} of what was chosen is reported and "
            "never used to choose: choosing on test is optimistic by construction.",
        ),
        ("95 % CI", ("95 %",), "The 95 % Student-t interval of a mean over n seeds: mean ± t(0.975, n-1) · s / √n."),
        (
            "single run, untested",
            ("single run", "1 seed"),
            "One seed per configuration: no interval and no test. One run cannot tell noise from effect; "
            "run the sweep with `seed=0,1,2` to test a difference.",
        ),
        (
            "significant, no detectable difference",
            ("significant", "no detectable difference"),
            f"A difference of test {score} is tested: a paired t-test on the per-seed differences when both "
            "configurations ran the same seeds (same split and initialisation), Welch's t-test otherwise, at 5 % "
            "after Holm. Not significant: the seeds cannot tell the two apart, and the report estimates the seeds a "
            "test would need to detect the observed difference with 80 % power.",
        ),
        (
            "identical across seeds",
            ("identical across seeds",),
            "The difference is the same on every seed (no spread at all): no test can be run, so the difference is "
            "stated as it is, without a p-value.",
        ),
        (
            "Holm",
            ("Holm",),
            "Holm's step-down correction (1979): the p-values of one table are adjusted together so that the chance "
            "of any false 'significant' in that table stays at 5 %.",
        ),
        (
            "P(A>B)",
            ("P(A>B)",),
            "The share of seed pairs where A scores higher than B (equal scores count one half; Bouthillier et al. "
            "2021): 0.5 means no tendency either way. Shown beside the test, which decides.",
        ),
        (
            "x smaller",
            ("x smaller",),
            "The size of the network as dense float32 weights over the size of this artifact on disk.",
        ),
        (
            "epochs in all",
            ("epochs in all",),
            "Epochs run + fine-tuning epochs + a distillation teacher's epochs: the training the deployed network "
            "cost, so that methods that train longer are compared as such.",
        ),
        (
            "latency, latency kind",
            ("latency kind", "simulated", "batch 1"),
            "Median milliseconds per sample at batch 1 on one CPU thread, of the deployed artifact reloaded. "
            "Kind `real`: the artifact runs its own kernels; `simulated`: masked weights or fake quantization run "
            f"dense float kernels, so no speed-up is real. Ratios under {LATENCY_NOISE}x without an interval are "
            "treated as timing noise.",
        ),
        (
            "latency round, within measurement",
            ("interleaved", "within measurement", "latency round"),
            "At the end of the sweep every distinct network is reloaded and timed side by side in interleaved "
            "rounds; two networks compare by the ratio of their times within each round, with a 95 % interval "
            "over rounds. 'Within measurement': that interval holds 1.",
        ),
        (
            "uncompressed",
            ("uncompressed",),
            "`compression=none`: the trained network saved as dense float32 weights, the reference every "
            "compression method is compared with.",
        ),
        (
            "task baseline",
            ("task baseline", "task's baseline"),
            f"The task's trivial reference (e.g. always the majority class), measured in the same runs: the {score} "
            f"of a model that learned nothing. A recommendation within {100 * NEAR_BASELINE:.0f} points of it is "
            "warned about.",
        ),
        (
            "Pareto front",
            ("Pareto",),
            f"The configurations no other one beats in test {score}, size and latency at once.",
        ),
        (
            "hypervolume",
            ("Hypervolume",),
            f"The volume of the ({score}, size, latency) box that the front dominates, up to a reference point "
            "(score 0, 1.1 x the largest size and latency): larger is better, comparable between sweeps with the "
            "same reference only.",
        ),
        (
            "DeepOBS-style",
            ("DeepOBS",),
            "Optimizers compared as the DeepOBS benchmark does (Schneider et al. 2019): each at its best "
            "learning rate chosen on validation, its test score, its speed and its tunability.",
        ),
        (
            "tunability",
            ("tunability",),
            f"The share of the learning rates tried whose mean validation {score} is within 1 point of that "
            "optimizer's best: high means forgiving of the learning rate.",
        ),
        (
            "epochs to target",
            ("epochs to target",),
            f"Epochs until validation {score} first reaches 90 % of the best validation {score} of the sweep.",
        ),
        (
            "edge of the searched range",
            ("edge of the searched range",),
            f"A hyper-parameter tried at {EDGE_MIN_VALUES} or more values whose best value is the smallest or the "
            "largest tried: the optimum may lie outside what was searched.",
        ),
        (
            "matched compression ratios",
            ("matched compression ratios",),
            "Families compared at the same compression ratio by interpolating each family's score curve linearly "
            "in log ratio, within the range both reach (Blalock et al. 2020).",
        ),
    ]


def build(inputs: ReportInputs) -> Section:
    """The terms the sections before it used, each explained once."""
    used = "\n".join(section.text() for section in inputs.written)
    rows = [
        {"term": term, "meaning": meaning} for term, words, meaning in entries() if any(word in used for word in words)
    ]
    return Section(TITLE, [Table(pd.DataFrame(rows, columns=["term", "meaning"]))])
