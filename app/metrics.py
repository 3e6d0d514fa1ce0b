"""Prometheus metrics: one registry per app, an ASGI middleware for HTTP series.

Series (all prefixed ``labelcut_``):

- ``http_requests_total{method, path, status}`` and
  ``http_request_duration_seconds{method, path}``: ``path`` is the route
  template (``/thresholds/{set_id}``), or ``other`` for unknown paths, so the
  label set stays small.
- ``batch_rows`` and ``batch_requests``: rows and requests per forward pass.
- ``model_forward_seconds``: time of each forward pass (including logits when asked).
- ``queue_depth``: requests waiting for a forward pass, read at scrape time.
- ``active_threshold_set_id``: the active set's id, 0 while none is active
  (0.5 for every label) or the model is not loaded yet; read at scrape time.
- drift, per ``label``, over the active set's window of recent /predict rows
  (``labelcut.app.drift_monitor``; read at scrape time): ``drift_positive_rate`` (share
  of rows given the label) and ``drift_mean_score``, NaN while the window is empty;
  ``expected_positive_rate`` and ``expected_mean_score`` from the set's validation data
  (only for sets that carry them); ``drift_drifted`` (1 when the label's rate is far
  from the expected one, see ``labelcut.tuning.drift.drifted_labels``); and
  ``drift_window_rows`` and ``drift_window_size``.

A client that goes away before its response is counted with status 499 ("client
closed request", as nginx logs it) and logged at info, never as a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelcut.app.drift_monitor import DriftReport

log = logging.getLogger("labelcut")

CLIENT_CLOSED = 499  # the status recorded for a request whose client went away

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0
)  # fmt: skip
FORWARD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 10_000)


class Metrics:
    """Every instrument of one app, registered in its own ``CollectorRegistry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "labelcut_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "path", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "labelcut_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route template.",
            ("method", "path"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "labelcut_batch_rows",
            "Rows per model forward pass (requests coalesced by the batcher).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "labelcut_batch_requests",
            "Requests per model forward pass.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.forward_seconds = Histogram(
            "labelcut_model_forward_seconds",
            "Time of one model forward pass over a batch.",
            buckets=FORWARD_BUCKETS,
            registry=self.registry,
        )
        # labels() takes a lock and builds a key; cache the children per label tuple.
        self._request_children: dict[tuple[str, str, str], Counter] = {}
        self._latency_children: dict[tuple[str, str], Histogram] = {}

    def observe_batch(self, rows: int, requests: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.forward_seconds.observe(seconds)

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        key = (method, path, str(status))
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(*key)
        counter.inc()
        timer = self._latency_children.get(key[:2])
        if timer is None:
            timer = self._latency_children[key[:2]] = self.latency.labels(method, path)
        timer.observe(seconds)

    def add_gauges(
        self, queue_depth: Callable[[], int], active_set_id: Callable[[], int | None]
    ) -> None:
        """Gauges read when scraped: the batch queue's depth and the active set's id."""
        self.registry.register(_ScrapeTimeGauges(queue_depth, active_set_id))

    def add_drift_gauges(self, report: Callable[[], DriftReport | None]) -> None:
        """Per-label drift gauges, read from `report()` when scraped (None: not loaded)."""
        self.registry.register(_DriftGauges(report))


class _ScrapeTimeGauges(Collector):
    def __init__(
        self, queue_depth: Callable[[], int], active_set_id: Callable[[], int | None]
    ) -> None:
        self._queue_depth = queue_depth
        self._active_set_id = active_set_id

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "labelcut_queue_depth",
            "Requests waiting for a model forward pass.",
            value=self._queue_depth(),
        )
        set_id = self._active_set_id()
        yield GaugeMetricFamily(
            "labelcut_active_threshold_set_id",
            "Id of the active threshold set; 0 while none is active (0.5 for every label).",
            value=0 if set_id is None else set_id,
        )


class _DriftGauges(Collector):
    def __init__(self, report: Callable[[], DriftReport | None]) -> None:
        self._report = report

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self._report()
        if report is None:
            return
        yield GaugeMetricFamily(
            "labelcut_drift_window_rows",
            "Rows of recent /predict traffic in the drift window of the active set.",
            value=report.window.n_rows,
        )
        yield GaugeMetricFamily(
            "labelcut_drift_window_size",
            "Capacity of the drift window in rows (LABELCUT_DRIFT_WINDOW).",
            value=report.size,
        )
        window, expected = report.window, report.expected
        series = [
            (
                "labelcut_drift_positive_rate",
                "Share of the window's rows given the label (the decision served); NaN "
                "while the window is empty.",
                window.positive_share,
            ),
            (
                "labelcut_drift_mean_score",
                "Mean served score of the label over the window; NaN while it is empty.",
                window.mean_score,
            ),
        ]
        if expected is not None:
            series += [
                (
                    "labelcut_expected_positive_rate",
                    "Share of the active set's validation rows given the label at its thresholds.",
                    expected.positive_share,
                ),
                (
                    "labelcut_expected_mean_score",
                    "Mean served score of the label on the active set's validation rows.",
                    expected.mean_score,
                ),
            ]
        series.append(
            (
                "labelcut_drift_drifted",
                "1 when the label's positive rate in the window is far from the expected one "
                "(more than 4 binomial standard errors and 0.02; at least 100 rows).",
                report.drifted.astype(float),
            )
        )
        for name, documentation, values in series:
            family = GaugeMetricFamily(name, documentation, labels=("label",))
            for label, value in zip(report.labels, values.tolist(), strict=True):
                family.add_metric((label,), value)
            yield family


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False
        disconnected = False  # before the response started: the request was cut short

        async def watching_receive() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect" and not started:
                disconnected = True
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        try:
            await self.app(scope, watching_receive, recording_send)
        except Exception as exc:
            if not (disconnected or _is_disconnect(exc)):
                raise
            # The client left mid-request (mid-body, or before the answer): nothing to
            # answer and nothing wrong with the server.
            status = CLIENT_CLOSED
        else:
            if disconnected and status >= 400:
                # A 400 ("error parsing the body") or 500 answered to a client that had
                # already gone: what happened is the disconnect.
                status = CLIENT_CLOSED
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            self.metrics.observe_request(scope["method"], path, status, time.perf_counter() - start)
            if status == CLIENT_CLOSED:
                log.info(
                    "Client %s went away during %s %s",
                    _peer(scope),
                    scope["method"],
                    scope["path"],
                )


def _is_disconnect(exc: BaseException) -> bool:
    """ClientDisconnect, or an error raised because of one (FastAPI wraps a failure while
    parsing the body in an HTTPException 400, chained from the ClientDisconnect)."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ClientDisconnect):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "(unknown)"
