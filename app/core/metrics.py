"""Prometheus metrics of one running service, on a registry of its own (two apps in one process, as in tests,
do not collide). What the parts of the service count is recorded here; what can be read off them at any time
(index size, the model's queue) is read when /metrics is scraped."""

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "sourcelens_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "sourcelens_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rejected = Counter(
            "sourcelens_rejected_requests_total",
            "Requests refused before a route ran, by reason",
            ["reason"],
            registry=registry,
        )
        self.search_stage = Histogram(
            "sourcelens_search_stage_seconds",
            "Time of each search stage (decode, embed, search, verify...)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_batch = Histogram(
            "sourcelens_model_batch_images",
            "Images per forward pass of searches",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.job_items = Counter(
            "sourcelens_ingest_items_total", "Ingest items processed, by outcome", ["outcome"], registry=registry
        )

    def watch(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge read at each scrape."""
        self.registry.register(_Reading(name, help_text, read))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Reading(Collector):
    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help_text, self.read = name, help_text, read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.help_text, value=self.read())
