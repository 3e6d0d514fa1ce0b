"""Issue 12, case 10, against a real server: a client that goes away mid-body is logged
at info (no ERROR, no traceback) and counted with status 499, never as a 500."""

from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

from .conftest import snapshot

pytestmark = pytest.mark.e2e

BOUNDARY = "b0undary"
CUT_SHORT = [
    (
        "/tune-thresholds",
        f"multipart/form-data; boundary={BOUNDARY}",
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="v.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + b"1,0,1\n" * 200_000,
    ),
    ("/tune-thresholds", f"multipart/form-data; boundary={BOUNDARY}", b"--" + BOUNDARY.encode()),
    ("/predict", "application/json", b'{"inputs": [[' + b"0.5," * 100_000),
    ("/predict", "application/x-npy", b"\x93NUMPY\x01\x00"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, yeast_npz_bytes):
    from ..support.server import Server

    # Info level, so the disconnect's own log line can be seen.
    s = Server(tmp_path_factory.mktemp("disconnects") / "data", "--log-level", "info")
    try:
        s.wait_ready()
        seeded = httpx.post(
            s.url + "/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}, timeout=60
        )
        assert seeded.status_code == 200, seeded.text
        yield s
    finally:
        s.stop()


def requests_counted(server) -> dict[tuple[str, str], float]:
    text = server.client().get("/metrics").text
    found = {}
    pattern = r'labelcut_http_requests_total\{method="POST",path="([^"]+)",status="(\d+)"\} (\S+)'
    for path, status, value in re.findall(pattern, text):
        found[(path, status)] = float(value)
    return found


def test_client_gone_mid_body_is_499_and_no_error(server):
    before = snapshot(server.client())
    counted = requests_counted(server)
    log_start = len(server.log.read_text())
    for path, content_type, partial in CUT_SHORT:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(partial) + 10_000_000}\r\n\r\n".encode()
                + partial
            )
            time.sleep(0.3)  # the server is reading the body
        time.sleep(0.3)  # ... and sees the connection close
    time.sleep(0.5)
    after = requests_counted(server)
    new = {key: after[key] - counted.get(key, 0) for key in after if after[key] != counted.get(key)}
    log = server.log.read_text()[log_start:]
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]
    assert not any(status.startswith("5") for _, status in new), new
    assert new.get(("/tune-thresholds", "499")) == 2, new
    assert new.get(("/predict", "499")) == 2, new
    assert "went away during POST /tune-thresholds" in log
    assert snapshot(server.client()) == before
