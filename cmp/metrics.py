"""Prometheus metrics, all in one place. Labels are bounded: route templates, status
codes, enumerated reasons — never a site or subject id."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class RequestStats(Collector):
    """Request counts and latency histograms by route template and status.

    Kept as plain numbers and rendered only when /metrics is scraped: the client
    library's counters take a lock per increment, a measurable share of a request here.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, str(status))
        self._counts[key] = self._counts.get(key, 0) + 1
        found = self._latency.get((route, method))
        if found is None:
            found = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
            self._latency[(route, method)] = found
        found[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        found[1][0] += seconds

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        counts = CounterMetricFamily(
            "cmp_http_requests", "HTTP requests", labels=["route", "method", "status"]
        )
        for labels, value in self._counts.items():
            counts.add_metric(list(labels), value)
        yield counts
        latency = HistogramMetricFamily(
            "cmp_http_request_seconds", "HTTP request latency", labels=["route", "method"]
        )
        for route_method, (buckets, total) in self._latency.items():
            cumulative, running = [], 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
                running += count
                cumulative.append((str(bound) if bound != float("inf") else "+Inf", running))
            latency.add_metric(list(route_method), cumulative, total[0])
        yield latency


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = RequestStats()
        self.registry.register(self.http)
        self.client_aborts = Counter(
            "cmp_http_client_aborts",
            "Requests whose client closed the connection before its body arrived",
            ["route", "method"],
            registry=self.registry,
        )
        self.events = Counter(
            "cmp_events", "Consent events by outcome", ["outcome"], registry=self.registry
        )
        self.accepted = self.events.labels("accepted")
        self.duplicates = self.events.labels("duplicate")
        self.rejections = Counter(
            "cmp_ingest_rejections",
            "Rejected ingest requests by reason",
            ["reason"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "cmp_commit_batch_events",
            "Events per group commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "cmp_commit_seconds",
            "Group commit transaction time",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "cmp_ingest_queue_events", "Events waiting for a commit", registry=self.registry
        )
        self.read_batch_size = Histogram(
            "cmp_state_read_batch",
            "State lookups per database read",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=self.registry,
        )
        self.integration_delay = Histogram(
            "cmp_log_integration_delay_seconds",
            "Commit to signed checkpoint: age of the oldest record of each tree integration",
            buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.integration_target = Gauge(
            "cmp_log_integration_interval_seconds",
            "How often new records are integrated into the Merkle tree (setting)",
            registry=self.registry,
        )
