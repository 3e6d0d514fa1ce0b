"""/predict against a real server: small bodies that used to cost gigabytes, inputs that
used to answer 500, a bundle name no header could carry, a stored rule no encoder could
write, and clients that hang up mid-body (issue 12, cases 1, 4, 8, 9 and 10).

Each case asserts the status, the detail, the server's peak memory over its level just
before the request (VmHWM reset through /proc/<pid>/clear_refs where allowed), and the
/healthz latency while the request runs.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from labelcut.models import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.e2e

NPY = "application/x-npy"
ROW = [0.5] * 103
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1_0_thresholds.sqlite3"
MAX_EXTRA_MB = 300
MAX_HEALTHZ_S = 0.5


class HealthProbe:
    """Polls /healthz from a thread while a request runs; keeps the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                assert client.get(self.url + "/healthz").status_code == 200
                self.worst = max(self.worst, time.perf_counter() - start)
                self._stop.wait(0.02)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        time.sleep(0.05)  # at least one answer before the request
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def costly(server, send):
    """(response, peak resident MB over the level before, slowest /healthz in s)."""
    pid = server.proc.pid
    try:  # reset the high-water mark to the current resident size
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = _status_mb(pid, "VmRSS")
    except OSError:
        before = _status_mb(pid, "VmHWM")
    with HealthProbe(server.url) as probe:
        response = send()
    return response, _status_mb(pid, "VmHWM") - before, probe.worst


def post(server, body: bytes, content_type: str = "application/json", **kw) -> httpx.Response:
    headers = {"content-type": content_type, **kw.pop("headers", {})}
    return httpx.post(server.url + "/predict", content=body, headers=headers, timeout=120, **kw)


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.fixture
def server(serve):
    return serve()


# --- case 4: bodies that would build millions of Python objects ----------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"inputs": [' + b"[]," * 10_000_000 + b"[]]}", "arrays ('[')"),
        (b'{"inputs": [[' + b"0," * 15_000_000 + b"0]]}", "values (',')"),
        (b'{"inputs": [' + b"{}," * 10_000_000 + b"{}]}", "objects ('{')"),
    ],
    ids=["empty-rows", "one-long-row", "objects"],
)
def test_30_mb_of_tiny_rows_is_refused_before_parsing(server, body, needle):
    assert len(body) >= 30_000_000
    response, extra_mb, healthz_s = costly(server, lambda: post(server, body))
    print(f"{len(body) / 1e6:.0f} MB body: +{extra_mb:.0f} MB, /healthz {healthz_s:.3f} s")
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert needle in detail and "LABELCUT_MAX_BATCH_ROWS" in detail
    assert extra_mb < MAX_EXTRA_MB, f"+{extra_mb:.0f} MB"
    assert healthz_s < MAX_HEALTHZ_S, f"/healthz took {healthz_s:.2f} s"


def test_largest_valid_json_body_is_served_without_blocking_health(server):
    rows = np.random.default_rng(0).random((10_000, 103))
    body = json.dumps({"inputs": rows.tolist()}).encode()
    response, extra_mb, healthz_s = costly(server, lambda: post(server, body))
    assert response.status_code == 200 and len(response.json()["predictions"]) == 10_000
    assert healthz_s < MAX_HEALTHZ_S, f"/healthz took {healthz_s:.2f} s"
    print(f"10,000 rows ({len(body) / 1e6:.0f} MB of JSON): +{extra_mb:.0f} MB")


# --- case 8: inputs that used to answer 500 -------------------------------------------------


def _broken_npy_header() -> bytes:
    raw = npy(np.zeros((1, 103), np.float32))
    size = int.from_bytes(raw[8:10], "little")
    header = raw[10 : 10 + size]
    broken = header.replace(b"(1, 103)", b"((1, 103)")[: size - 1] + b"\n"
    return raw[:10] + broken + raw[10 + size :]


@pytest.mark.parametrize(
    ("body", "content_type", "needle"),
    [
        (b"[" * 5000 + b"]" * 5000, "application/json", "nested deeper than 1024"),
        (json.dumps({"inputs": [[10**400, *ROW[1:]]]}).encode(), "application/json", "inputs[0]"),
        (
            json.dumps({"inputs": [ROW], "thresholds": {"Class3": 10**400}}).encode(),
            "application/json",
            "Class3",
        ),
        (b'{"inputs": [[' + b"7" * 5000 + b"]]}", "application/json", "4300"),
        (_broken_npy_header(), NPY, "not a readable .npy file"),
        (b'{"inputs": [[' + b"0.5," * 102 + b'0.5]], "threshold": NaN}', None, "threshold is nan"),
        (
            b'{"inputs": [[' + b"0.5," * 102 + b'0.5]], "thresholds": {"Class2": -Infinity}}',
            None,
            "thresholds['Class2'] is -inf",
        ),
        (json.dumps({"inputs": [ROW], "threshold": 10**400}).encode(), None, "threshold"),
    ],
    ids=[
        "deep",
        "huge-input",
        "huge-threshold",
        "digits-past-4300",
        "npy-header",
        "nan-confidence",
        "infinite-threshold",
        "huge-confidence",
    ],
)
def test_pathological_inputs_are_422_naming_the_problem(server, body, content_type, needle):
    content_type = content_type or "application/json"
    response, extra_mb, healthz_s = costly(server, lambda: post(server, body, content_type))
    assert response.status_code == 422, response.text
    assert needle in json.dumps(response.json()["detail"])
    assert extra_mb < MAX_EXTRA_MB and healthz_s < MAX_HEALTHZ_S


def test_query_parameters_are_422_naming_them(server):
    body = json.dumps({"inputs": [ROW]}).encode()
    response = post(server, body, params={"treshold": "0.3"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "treshold"]


# --- case 9: a model name no Latin-1 header can carry ---------------------------------------


def test_a_non_latin1_bundle_name_is_served_on_every_path(serve, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_MODEL_DIR, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["name"] = name = "modèle-名前"
    (bundle / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False))
    server = serve(env={"LABELCUT_MODEL_DIR": str(bundle)})
    rows = np.zeros((2, 103), np.float32)
    as_json = post(server, npy(rows), NPY)
    as_npy = post(server, npy(rows), NPY, headers={"accept": NPY})
    assert as_json.status_code == 200 and as_json.json()["model"] == name
    assert as_npy.status_code == 200, as_npy.text
    assert unquote(as_npy.headers["x-labelcut-model"]) == name
    assert np.load(io.BytesIO(as_npy.content)).shape == (2, 14)


# --- case 1 (serving side): a stored rule with an absurd k ----------------------------------


def test_a_stored_top_k_with_an_absurd_k_never_breaks_predict(serve, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    store = data / "thresholds.sqlite3"
    shutil.copyfile(FIXTURE, store)
    with sqlite3.connect(store) as conn:  # what an older release let a tune store
        (set_id,) = conn.execute(
            "SELECT set_id FROM active_sets WHERE model_sha256 != ?", ("e" * 64,)
        ).fetchone()
        (params,) = conn.execute(
            "SELECT params FROM threshold_sets WHERE id = ?", (set_id,)
        ).fetchone()
        params = {**json.loads(params), "decision_rule": "top_k", "k": 18446744073709551616}
        conn.execute(
            "UPDATE threshold_sets SET params = ? WHERE id = ?", (json.dumps(params), set_id)
        )
    server = serve(data_dir=data)
    for _ in range(2):  # and again: the answer does not depend on a first warning
        response = post(server, json.dumps({"inputs": [ROW, ROW]}).encode())
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["threshold_set_id"] == set_id
        assert answer["decision_rule"] == "top_k" and answer["k"] == 14  # clamped to L
    assert post(server, npy(np.zeros((1, 103), np.float32)), NPY).status_code == 200


# --- case 10: a client that hangs up mid-body -----------------------------------------------


def _metric_total(url: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_a_client_that_disconnects_mid_body_is_no_server_error(server):
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000\r\n\r\n"
    )
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head + b'{"inputs": [[' + b"0.5, " * 1000)
            time.sleep(0.2)  # the server is reading the body when the client goes
    time.sleep(0.5)
    assert post(server, json.dumps({"inputs": [ROW]}).encode()).status_code == 200
    errors = _metric_total(
        server.url, "labelcut_http_requests_total", path="/predict", status="500"
    )
    assert errors == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
