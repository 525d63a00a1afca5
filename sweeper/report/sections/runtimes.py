"""Each configuration in each runtime of ``measure.runtimes`` (PyTorch and ONNX Runtime), when measured."""

from __future__ import annotations

import math

import pandas as pd

from sweeper.report.grouping import uncompressed_for
from sweeper.report.inputs import ReportInputs
from sweeper.report.render import Section, Table
from sweeper.report.stats import score_label
from sweeper.report.text import num

__all__ = ["build", "ratio_text"]


def ratio_text(a: object, b: object) -> str:
    """``0.21x [0.19, 0.23]``: per-round times ``a`` over ``b`` (the same rounds), or — without both."""
    from sweeper.report.latency_round import ratio_interval

    if not (isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and a):
        return "—"
    ratio, low, high = ratio_interval(a, b)
    interval = f" [{low:.2f}, {high:.2f}]" if not math.isnan(low) else ""
    same = " (within measurement)" if not math.isnan(low) and low <= 1 <= high else ""
    return f"{ratio:.2f}x{interval}{same}"


def _first_text(group: pd.DataFrame, column: str) -> str:
    values = group[column].dropna().astype(str) if column in group else pd.Series(dtype=str)
    return str(values.iloc[0]) if len(values) else ""


def build(inputs: ReportInputs) -> Section | None:
    """Score, size, latency and ratios per runtime (None: PyTorch only)."""
    runs, table = inputs.runs, inputs.table
    exported = "test_score_onnxruntime" in table and table["test_score_onnxruntime"].notna().any()
    refused = "onnxruntime_unavailable" in runs and runs["onnxruntime_unavailable"].notna().any()
    if not (exported or refused):
        return None
    ok = runs[runs["outcome"] == "ok"]
    rows = []
    for config, r in inputs.ranked.iterrows():
        group = ok[ok["config"] == config]
        reason = _first_text(group, "onnxruntime_unavailable")
        uncompressed = uncompressed_for(table, str(config))
        reference = table.loc[uncompressed] if uncompressed is not None else None
        rows.append(
            {
                "configuration": config,
                "in onnxruntime": _first_text(group, "onnxruntime_model")
                or f"cannot export: {reason or 'not measured'}",
                f"test {score_label()} torch / onnxruntime (%)": f"{num(100 * r['score_mean'], '.1f')} / "
                + num(100 * r.get("test_score_onnxruntime", math.nan), ".1f"),
                "size torch / onnx (KiB)": f"{num(r['size_bytes'] / 1024, '.1f')} / "
                + num(r.get("size_bytes_onnxruntime", math.nan) / 1024, ".1f"),
                "batch 1 torch / onnxruntime (ms)": f"{num(r['latency_ms'], '.3f')} / "
                + num(r.get("latency_ms_onnxruntime", math.nan), ".3f"),
                "onnxruntime / torch": ratio_text(r.get("latency_rounds_onnxruntime"), r.get("latency_rounds")),
                "onnxruntime vs none in onnxruntime": "—"
                if reference is None or uncompressed == config
                else ratio_text(r.get("latency_rounds_onnxruntime"), reference.get("latency_rounds_onnxruntime")),
            }
        )
    text = (
        "`measure.runtimes` measured each deployed network in ONNX Runtime too (one thread, as PyTorch): float "
        "networks exported as they run in PyTorch; torch int8 artifacts (no ONNX form) as their float network "
        f"quantized by ONNX Runtime's own quantizer, whose test {score_label()} is measured again. Ratios are "
        "geometric means of the per-round ratios of the interleaved latency round at batch 1 [95 % interval]; "
        "below 1 is faster. The runtime often decides whether int8 pays on a CPU."
    )
    return Section("Runtimes", [text, Table(pd.DataFrame(rows), "Each configuration in each runtime")])
