"""A run without the dashboard: estimates as JSON lines on stdout, a summary on stderr.

The stdout consumer is lossless (every estimate, in order, flushed per line). When stdout's
reader goes away (``streamser listen --headless | head -1``) the run stops as if asked to: the
session is closed cleanly and nothing more is computed.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import numpy as np

from streamser.console import LineSink, stop_on_signals
from streamser.contracts import Estimate

POLL_S = 0.2
"""How often the run loop looks at the stop conditions."""


def estimate_line(est: Estimate) -> str:
    """One estimate in the headless schema, on one line."""
    return json.dumps(est.to_json_dict(), separators=(",", ":"))


def run_headless(pipeline: Any) -> int:
    """Run ``pipeline`` to its end (or a signal, or stdout closing); the exit code."""
    stop = threading.Event()
    latencies: list[float] = []
    sink = LineSink(estimate_line, on_gone=stop.set)

    def consume(est: Estimate) -> None:
        latencies.append(est.latency_s)
        sink(est)

    pipeline.bus.subscribe_lossless("stdout", consume)
    with stop_on_signals(stop):
        pipeline.start()
        while not stop.is_set() and not pipeline.wait(POLL_S):
            pass
        pipeline.stop()
    print_summary(pipeline, latencies)
    return exit_code(pipeline)


def exit_code(pipeline: Any) -> int:
    """0 for a run that ended as asked; 1 when the model or the input failed for good."""
    if pipeline.worker.error is not None:
        return 1
    error = getattr(pipeline.source, "error", None)
    if error is not None:
        print(f"streamser: error: input lost: {error}", file=sys.stderr)
        return 1
    return 0


def print_summary(pipeline: Any, latencies: list[float]) -> None:
    """The end-of-run line on stderr: counts, compute time, latency, where the session is."""
    c = pipeline.counters()
    streams = c.get("streams") or []
    per_stream = (
        " (" + ", ".join(f"{s['name']} {s['estimates']}" for s in streams) + ")"
        if len(streams) > 1
        else ""
    )
    parts = [
        f"{c['estimates']} estimates{per_stream} over {c['stream_s']:.1f} s of audio",
        f"{c['skipped_windows']} skipped windows",
        f"{c['dropped_samples']} dropped samples",
    ]
    if c["estimates"]:
        parts.append(f"compute {c['compute_s_total'] / c['estimates'] * 1000:.1f} ms/window")
    if latencies:
        p50, p95 = np.percentile(latencies, [50, 95])
        parts.append(f"latency p50 {p50:.2f} s, p95 {p95:.2f} s, max {max(latencies):.2f} s")
    status = pipeline.status()
    if status.session_path is not None:
        parts.append(f"session {status.session_path}")
    if status.log_error:
        parts.append(status.log_error)
    print("streamser: " + "; ".join(parts), file=sys.stderr)
