"""Prometheus exporter (prometheus-client): ``GET /metrics`` and the request middleware.

Request counts and latencies are counted per process by ``RequestMetricsMiddleware``;
with several gunicorn workers set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode; ``scripts/run.sh`` does) so that any worker's scrape reports them
all. Everything else is read from the database and the broker at scrape time
(``selectors.metrics``), identical from every process. ``CXR_METRICS_TOKEN``, when set, is
required as ``Authorization: Bearer <token>``. No patient data is exported.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from classifier.selectors import metrics as readings

QUEUES = ["inference", "training", "webhooks"]
REQUESTS = CollectorRegistry()
REQUEST_COUNT = Counter(
    "cxr_http_requests",
    "HTTP requests answered, by route and status.",
    ["method", "route", "status"],
    registry=REQUESTS,
)
REQUEST_SECONDS = Histogram(
    "cxr_http_request_duration_seconds", "Time to answer an HTTP request, by route.", ["route"], registry=REQUESTS
)


class RequestMetricsMiddleware:
    """Counts every request by its URL pattern (not its path: bounded label values)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = str(match.route) if match is not None and match.route else "unmatched"
        REQUEST_COUNT.labels(request.method or "", route, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
        return response


def _histogram(name: str, doc: str, label: str, values: dict[str, readings.Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, histogram in values.items():
        buckets = [(str(bound), count) for bound, count in histogram.buckets] + [("+Inf", histogram.count)]
        family.add_metric([key], buckets, histogram.total)
    return family


class DatabaseCollector:
    """The product's state, read at scrape time."""

    def collect(self) -> Iterator[Any]:
        status = GaugeMetricFamily("cxr_predictions", "Predictions by status.", labels=["status"])
        for name, count in readings.prediction_status_counts().items():
            status.add_metric([name], count)
        yield status
        failures = CounterMetricFamily(
            "cxr_prediction_failures", "Failed predictions by stage and code.", labels=["stage", "code"]
        )
        for (stage, code), count in readings.prediction_failures_by_stage().items():
            failures.add_metric([stage, code], count)
        yield failures
        yield _histogram(
            "cxr_prediction_stage_seconds",
            "Time per pipeline stage of finished predictions.",
            "stage",
            readings.prediction_stage_latency(),
        )
        yield _histogram(
            "cxr_prediction_latency_seconds",
            "Upload to result of finished predictions, queue wait included.",
            "path",
            {"end_to_end": readings.prediction_end_to_end_latency()},
        )
        pending, oldest = readings.webhook_backlog()
        yield GaugeMetricFamily("cxr_webhook_deliveries_pending", "Webhook deliveries not yet delivered.", pending)
        yield GaugeMetricFamily(
            "cxr_webhook_oldest_pending_seconds", "Age of the oldest undelivered webhook delivery.", oldest
        )
        yield GaugeMetricFamily(
            "cxr_dicom_deliveries_pending",
            "SR and Secondary Capture objects not yet stored by their PACS.",
            readings.dicom_delivery_backlog(),
        )
        depths = readings.broker_queue_depths(QUEUES)
        yield GaugeMetricFamily("cxr_broker_up", "1 when the broker answered this scrape.", 0 if depths is None else 1)
        queue = GaugeMetricFamily("cxr_queue_depth", "Messages waiting in each broker queue.", labels=["queue"])
        for name, count in (depths or {}).items():
            queue.add_metric([name], count)
        yield queue


def _authorised(request: HttpRequest) -> bool:
    token = settings.CXR["METRICS_TOKEN"]
    if not token:
        return True
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.encode())


def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of everything above."""
    if not _authorised(request):
        return HttpResponse("A valid metrics token is required.\n", status=401, content_type="text/plain")
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        requests_registry = CollectorRegistry()
        MultiProcessCollector(requests_registry)
    else:
        requests_registry = REQUESTS
    body = generate_latest(requests_registry) + generate_latest(registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
