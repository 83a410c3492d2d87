"""`GET /metrics`: Prometheus text, from a registry of this service (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """Every metric of one service instance, labelled by app (the User.com subdomain)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "usercom_events_received",
            "Events accepted by ingest and committed to the ledger (repeats not counted)",
            ["app", "type"],
            registry=r,
        )
        self.duplicates = Counter(
            "usercom_events_duplicate",
            "Events received again with a key and content the ledger already holds",
            ["app"],
            registry=r,
        )
        self.repeated = Counter(
            "usercom_events_repeated",
            "Events received under the key of a queued event with other content: rejected, "
            "the queued one kept",
            ["app"],
            registry=r,
        )
        self.delivered = Counter(
            "usercom_events_delivered", "Events delivered to User.com", ["app", "type"], registry=r
        )
        self.rejected = Counter(
            "usercom_events_rejected",
            "Events filed rejected (invalid, unsupported type, over the size limit, refused)",
            ["app", "type"],
            registry=r,
        )
        self.failed = Counter(
            "usercom_events_failed",
            "Delivery rounds that ended with an event failed (it is tried again later)",
            ["app", "type"],
            registry=r,
        )
        self.given_up = Counter(
            "usercom_events_given_up",
            "Failed events older than --give-up-after: no longer tried (usercom failed/requeue)",
            ["app"],
            registry=r,
        )
        self.api_calls = Counter(
            "usercom_api_calls",
            "Requests made to User.com, by endpoint and answer (status or failure)",
            ["app", "endpoint", "status"],
            registry=r,
        )
        self.throttled = Counter(
            "usercom_api_throttled", "429 answers from User.com", ["app"], registry=r
        )
        self.queued = Gauge(
            "usercom_queue_depth",
            "Events in the ledger not finished yet (pending, held, failed)",
            ["app"],
            registry=r,
        )
        self.oldest = Gauge(
            "usercom_oldest_queued_age_seconds",
            "Age of the oldest unfinished event (0 when none)",
            ["app"],
            registry=r,
        )
        self.in_flight = Gauge(
            "usercom_in_flight", "Events being delivered right now", ["app"], registry=r
        )
        self.paused = Gauge(
            "usercom_paused",
            "1 while delivery of the app is paused by a run-level fault (see /health)",
            ["app"],
            registry=r,
        )
        self.requests = Counter(
            "usercom_ingest_requests",
            "Requests to the service, by route and answer status",
            ["route", "status"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "usercom_ingest_seconds",
            "Time to answer an ingest request (the commit included)",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )

    def add_app(self, app: str) -> None:
        """Show the app's gauges from the start (0), before anything happens."""
        for gauge in (self.queued, self.oldest, self.in_flight, self.paused):
            gauge.labels(app=app).set(0)
        self.throttled.labels(app=app)
        self.given_up.labels(app=app)
        self.repeated.labels(app=app)

    @staticmethod
    def total(counter: Counter, app: str) -> int:
        """A counter's value for one app, summed over its other labels (the console's charts)."""
        return int(
            sum(
                sample.value
                for metric in counter.collect()
                for sample in metric.samples
                if sample.name.endswith("_total") and sample.labels.get("app") == app
            )
        )

    def text(self) -> bytes:
        return generate_latest(self.registry)
