"""Issue 12, case 5 and the slow-client limits, against a real server: a huge request line
or header is refused 431 after LABELCUT_MAX_HEADER_KB without blocking the event loop;
headers that trickle in, a body that stalls, and idle keep-alive connections are cut off."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from ..support.server import Server
from .conftest import snapshot
from .probes import HealthProbe, PeakMemory, read_http_response, send_until_answered

pytestmark = pytest.mark.e2e

TIMEOUT_S = 1.0
MB = 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory, yeast_npz_bytes):
    s = Server(
        tmp_path_factory.mktemp("http-limits") / "data",
        env={
            "LABELCUT_HEADER_TIMEOUT_S": str(TIMEOUT_S),
            "LABELCUT_BODY_TIMEOUT_S": str(TIMEOUT_S),
            "LABELCUT_KEEP_ALIVE_S": str(TIMEOUT_S),
        },
    )
    try:
        s.wait_ready()
        seeded = httpx.post(
            s.url + "/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}, timeout=60
        )
        assert seeded.status_code == 200, seeded.text
        yield s
    finally:
        s.stop()


HEADS = {
    "one-header-line": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",
    "request-line": b"GET /healthz?q=",
    "many-header-lines": b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
}


@pytest.mark.parametrize("intended_mb", [64, 256])
@pytest.mark.parametrize("shape", list(HEADS))
def test_huge_head_is_refused_431_without_blocking(server, shape, intended_mb):
    before = snapshot(server.client())
    piece = b"X-Many: aaaaaaaaaaaaaaaa\r\n" * 40_000 if shape == "many-header-lines" else b"a" * MB
    memory = PeakMemory(server.proc.pid)
    with (
        HealthProbe(server.url) as probe,
        socket.create_connection(("127.0.0.1", server.port)) as sock,
    ):
        sent = send_until_answered(sock, HEADS[shape], piece, intended_mb * MB)
        status, _, body = read_http_response(sock)
        time.sleep(0.3)  # a few more health samples after the refusal
    print(
        f"{shape} {intended_mb} MB: {status} after {sent / MB:.1f} MB sent, peak "
        f"+{memory.grew_mb():.0f} MB, worst /healthz {probe.worst * 1000:.0f} ms"
    )
    assert status == 431, body
    assert b"LABELCUT_MAX_HEADER_KB" in body and b"64 KB" in body
    # Refused after the first 64 KB (plus what socket buffers held), not after 64-256 MB.
    assert sent < 16 * MB, sent
    assert probe.worst < 0.5, probe.latencies
    assert memory.grew_mb() < 300, memory.grew_mb()
    assert snapshot(server.client()) == before  # a fresh connection: idle ones close


def test_headers_at_the_limit_pass(server):
    # 60 KB of headers is under the 64 KB default: answered as usual.
    headers = {f"x-pad-{i}": "b" * 1000 for i in range(60)}
    response = server.client().get("/healthz", headers=headers)
    assert response.status_code == 200


def test_headers_that_trickle_in_are_cut_off_408(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(5):  # a slowloris: a byte now and then, never the blank line
            time.sleep(0.3)
            try:
                sock.sendall(b"X")
            except OSError:
                break
        status, _, body = read_http_response(sock)
        took = time.monotonic() - start
    assert status == 408 and b"LABELCUT_HEADER_TIMEOUT_S" in body
    assert TIMEOUT_S - 0.1 <= took < TIMEOUT_S + 2


def test_a_connection_that_sends_nothing_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        start = time.monotonic()
        status, _, _ = read_http_response(sock)
        assert status == 408
        assert time.monotonic() - start < TIMEOUT_S + 2


@pytest.mark.parametrize("path", ["/tune-thresholds", "/predict"])
def test_a_stalled_body_is_cut_off_408(server, path):
    before = snapshot(server.client())
    content_type = (
        "multipart/form-data; boundary=b" if path == "/tune-thresholds" else "application/json"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            "Content-Length: 100000\r\n\r\n--b\r\n".encode()
        )
        start = time.monotonic()
        status, _, body = read_http_response(sock)
        took = time.monotonic() - start
    assert status == 408 and b"LABELCUT_BODY_TIMEOUT_S" in body
    assert TIMEOUT_S - 0.1 <= took < TIMEOUT_S + 2
    assert snapshot(server.client()) == before  # a fresh connection: idle ones close


def test_a_slow_but_steady_body_is_not_cut_off(server, yeast_npz_bytes):
    """Pieces 0.4 s apart never stall for the 1 s limit, though the whole takes longer."""
    body = httpx.Request(
        "POST",
        server.url + "/tune-thresholds",
        files={"file": ("v.npz", yeast_npz_bytes)},
        data={"store": "false"},
    )
    payload = body.read()
    head = (
        f"POST /tune-thresholds HTTP/1.1\r\nHost: x\r\nContent-Type: "
        f"{body.headers['content-type']}\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head)
        pieces = [
            payload[i : i + len(payload) // 4 + 1]
            for i in range(0, len(payload), len(payload) // 4 + 1)
        ]
        for piece in pieces:
            time.sleep(0.4)
            sock.sendall(piece)
        status, _, answer = read_http_response(sock, timeout=60)
    assert len(pieces) >= 4
    assert status == 200, answer[:500]


def test_idle_keep_alive_connection_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = read_http_response(sock)
        assert status == 200
        start = time.monotonic()
        sock.settimeout(10)
        assert sock.recv(1) == b""  # the server closed the idle connection
        assert time.monotonic() - start < TIMEOUT_S + 2
