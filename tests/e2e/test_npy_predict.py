"""End to end: batching, the .npy path and /metrics on a real `labelcut serve` process."""

from __future__ import annotations

import io
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from labelcut.models import YEAST_TEST, load_model

from ..support.server import Server

pytestmark = pytest.mark.e2e

NPY = "application/x-npy"


@pytest.fixture(scope="module")
def rows():
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        return z["X"][:48].astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return load_model(device="cpu")


def metric(url: str, name: str) -> float:
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no {name}")


def concurrent_predictions(url: str, rows: np.ndarray) -> list[httpx.Response]:
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(16) as pool:
        return list(
            pool.map(lambda r: client.post(url + "/predict", json={"inputs": [r.tolist()]}), rows)
        )


@pytest.mark.parametrize("batch_size", ["64", "1"])
def test_concurrent_json_and_npy_against_a_real_server(tmp_path, rows, model, batch_size):
    server = Server(tmp_path / "data", env={"LABELCUT_MAX_BATCH_SIZE": batch_size})
    try:
        server.wait_ready()
        responses = concurrent_predictions(server.url, rows)
        expected = model.predict_proba(rows)
        for response, want in zip(responses, expected, strict=True):
            assert response.status_code == 200, response.text
            scores = response.json()["predictions"][0]["scores"]
            np.testing.assert_allclose([scores[label] for label in model.labels], want, atol=1e-6)

        buf = io.BytesIO()
        np.save(buf, rows)
        as_json = httpx.post(
            server.url + "/predict", content=buf.getvalue(), headers={"content-type": NPY}
        )
        assert as_json.status_code == 200 and len(as_json.json()["predictions"]) == len(rows)
        as_npy = httpx.post(
            server.url + "/predict",
            content=buf.getvalue(),
            headers={"content-type": NPY, "accept": NPY},
        )
        proba = np.load(io.BytesIO(as_npy.content), allow_pickle=False)
        np.testing.assert_allclose(proba, expected, atol=1e-6)

        served = len(rows) + 2
        assert metric(server.url, "labelcut_batch_rows_sum") == len(rows) + 2 * len(rows)
        assert metric(server.url, "labelcut_batch_requests_sum") == served
        passes = metric(server.url, "labelcut_batch_requests_count")
        if batch_size == "1":
            assert passes == served  # batching off: one pass per request
        else:
            assert passes <= served
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in server.log.read_text()
