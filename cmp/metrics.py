"""Prometheus metrics, all in one place. Labels are bounded: route templates, status
codes, enumerated reasons — never a site or subject id."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        # Labelled children, looked up once: `.labels()` costs microseconds per call.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cmp_http_requests",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cmp_http_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.events = Counter(
            "cmp_events", "Consent events by outcome", ["outcome"], registry=self.registry
        )
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

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)
