"""The server's Prometheus metrics, in a registry of its own (never the process-wide default,
so two servers in one process, as in tests, never share counters).

Counters the server keeps itself (streams, estimates, latency, skips, refusals, errors by code)
are prometheus-client metrics updated as things happen; the executor's own counters (batch
sizes, queue wait, windows run) are read from one consistent :meth:`Executor.stats` snapshot at
each scrape by a collector, so the page can never disagree with the executor.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from streamser.engine.executor import Executor
from streamser.server.protocol import ERROR_CLOSE_CODES

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What :meth:`ServerMetrics.render` writes: the Prometheus text format."""


class _ExecutorCollector:
    """The shared executor's counters, as Prometheus metrics, at scrape time."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def collect(self) -> Iterable[Metric]:
        s = self.executor.stats()
        cumulative, buckets = 0, []
        for le in BATCH_BUCKETS:
            cumulative += sum(n for size, n in s.batch_sizes.items() if _bucket(size) == le)
            buckets.append((str(le), float(cumulative)))
        buckets.append(("+Inf", float(s.batches_run)))
        taken = sum(size * n for size, n in s.batch_sizes.items())
        yield HistogramMetricFamily(
            "streamser_batch_size",
            "Windows per forward pass of the shared model.",
            buckets=buckets,
            sum_value=float(taken),
        )
        yield CounterMetricFamily(
            "streamser_model_windows", "Windows the model computed.", value=s.windows_run
        )
        yield CounterMetricFamily(
            "streamser_model_compute_seconds",
            "Seconds spent inside forward passes.",
            value=s.compute_s_total,
        )
        yield SummaryMetricFamily(
            "streamser_queue_wait_seconds",
            "From a window's submission to the start of its batch.",
            count_value=taken,
            sum_value=s.queue_wait_s_total,
        )
        yield GaugeMetricFamily(
            "streamser_queue_depth", "Windows waiting for the model now.", value=s.queue_depth
        )
        yield CounterMetricFamily(
            "streamser_model_superseded",
            "Live windows replaced at the model by a newer one of the same stream.",
            value=s.superseded,
        )


def _bucket(size: int) -> int | None:
    """The smallest bucket bound a batch size falls under."""
    return next((le for le in BATCH_BUCKETS if size <= le), None)


class ServerMetrics:
    """Everything /metrics shows; update methods are thread-safe (prometheus-client locks)."""

    def __init__(self, executor: Executor) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.streams = Gauge(
            "streamser_streams_connected", "Streams being analysed now.", registry=r
        )
        self.connections = Gauge(
            "streamser_connections_open", "WebSocket connections open now.", registry=r
        )
        self.estimates = Counter(
            "streamser_windows", "Estimates delivered to clients (windows/s: its rate).", registry=r
        )
        self.skipped = Counter(
            "streamser_windows_skipped",
            "Live windows not computed because a newer one was due (newest wins).",
            registry=r,
        )
        self.refused = Counter(
            "streamser_streams_refused", "Streams refused at admission (--max-streams).", registry=r
        )
        self.errors = Counter(
            "streamser_errors",
            "Connections ended by a protocol error, by code.",
            ["code"],
            registry=r,
        )
        for code in ERROR_CLOSE_CODES:
            self.errors.labels(code=code)
        self.latency = Histogram(
            "streamser_latency_seconds",
            "From the arrival of a window's last sample to its estimate.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        r.register(_ExecutorCollector(executor))

    def on_estimate(self, latency_s: float, new_skips: int) -> None:
        self.estimates.inc()
        self.latency.observe(latency_s)
        if new_skips:
            self.skipped.inc(new_skips)

    def render(self) -> bytes:
        return generate_latest(self.registry)
