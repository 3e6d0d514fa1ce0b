"""GET /metrics: the named Prometheus series, per app."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from .conftest import make_client, wait_ready


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(samples, name: str, **labels) -> float:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {name} {labels} in {samples}")


def test_metrics_expose_requests_latency_batches_queue_and_active_set(client, yeast_npz_bytes):
    for _ in range(3):
        assert client.post("/predict", json={"inputs": [[0.0] * 103] * 2}).status_code == 200
    assert client.post("/predict", json={"inputs": [[0.0] * 5]}).status_code == 422
    client.get("/no-such-page")
    families = scrape(client)

    requests = families["labelcut_http_requests"]
    assert value(requests, "labelcut_http_requests_total", path="/predict", status="200") == 3
    assert value(requests, "labelcut_http_requests_total", path="/predict", status="422") == 1
    assert value(requests, "labelcut_http_requests_total", path="other", status="404") == 1
    latency = families["labelcut_http_request_duration_seconds"]
    assert value(latency, "labelcut_http_request_duration_seconds_count", path="/predict") == 4
    # Three passes of two rows each, one request per pass.
    assert value(families["labelcut_batch_rows"], "labelcut_batch_rows_count") == 3
    assert value(families["labelcut_batch_rows"], "labelcut_batch_rows_sum") == 6
    assert value(families["labelcut_batch_requests"], "labelcut_batch_requests_sum") == 3
    forward = families["labelcut_model_forward_seconds"]
    assert value(forward, "labelcut_model_forward_seconds_sum") > 0
    assert value(families["labelcut_queue_depth"], "labelcut_queue_depth") == 0
    active = families["labelcut_active_threshold_set_id"]
    assert value(active, "labelcut_active_threshold_set_id") == 0

    tuned = client.post("/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}).json()
    active = scrape(client)["labelcut_active_threshold_set_id"]
    assert value(active, "labelcut_active_threshold_set_id") == tuned["threshold_set"]["id"]


def test_each_app_has_its_own_registry(tmp_path):
    with make_client(tmp_path / "a") as a, make_client(tmp_path / "b") as b:
        wait_ready(a)
        wait_ready(b)
        a.post("/predict", json={"inputs": [[0.0] * 103]})
        text_b = b.get("/metrics").text
        assert not re.search(r'labelcut_http_requests_total\{[^}]*path="/predict"', text_b)
