"""Request size limits against a real server: LABELCUT_MAX_UPLOAD_MB is enforced while a
body streams in (declared or chunked), and LABELCUT_MAX_BATCH_ROWS per /predict call."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from ..support.server import Server
from .conftest import snapshot

pytestmark = pytest.mark.e2e

MAX_UPLOAD_MB = 1
MAX_BATCH_ROWS = 50
INTENDED = 256 * 2**20  # what the client means to send: 256 MB
BOUNDARY = "hardening-boundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory, yeast_npz_bytes):
    data_dir = tmp_path_factory.mktemp("limits") / "data"
    s = Server(
        data_dir,
        env={
            "LABELCUT_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
            "LABELCUT_MAX_BATCH_ROWS": str(MAX_BATCH_ROWS),
        },
    )
    try:
        s.wait_ready()
        response = httpx.post(
            s.url + "/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}, timeout=60
        )
        assert response.status_code == 200, response.text
        yield s
    finally:
        s.stop()


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict]:
    """Status and JSON body of the one HTTP/1.1 response on `sock`."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), json.loads(body[:length])


def send_until_answered(sock: socket.socket, first: bytes, piece: bytes, total: int) -> int:
    """Send `first`, then `piece` as HTTP chunks until `total` bytes are out or the server
    answers (or closes); returns how many body bytes were sent."""
    sock.sendall(first)
    sock.setblocking(False)
    sent = 0
    framed = b"%x\r\n" % len(piece) + piece + b"\r\n"
    pending = b""
    try:
        while sent < total:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break  # the server has answered
            except BlockingIOError:
                pass
            if not pending:
                pending = framed
                sent += len(piece)
            try:
                pending = pending[sock.send(pending) :]
            except BlockingIOError:
                time.sleep(0.002)
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.setblocking(True)
    return sent


def chunked_request(path: str, content_type: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


def multipart_preamble() -> bytes:
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="v.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    return b"%x\r\n" % len(part) + part + b"\r\n"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/predict", "application/json"),
        ("/tune-thresholds", f"multipart/form-data; boundary={BOUNDARY}"),
    ],
)
def test_declared_length_over_the_limit_is_answered_before_the_body(server, path, content_type):
    before = snapshot(httpx.Client(base_url=server.url))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {INTENDED}\r\n\r\n"
            ).encode()
        )
        # Not one byte of the body is sent: the answer must come from the headers alone.
        status, body = read_response(sock)
    assert status == 413
    assert "LABELCUT_MAX_UPLOAD_MB" in body["detail"] and "1 MB" in body["detail"]
    assert snapshot(httpx.Client(base_url=server.url)) == before


@pytest.mark.parametrize(
    ("path", "content_type", "preamble"),
    [
        ("/predict", "application/json", b""),
        ("/tune-thresholds", f"multipart/form-data; boundary={BOUNDARY}", multipart_preamble()),
    ],
    ids=["json", "multipart"],
)
def test_chunked_body_is_cut_off_while_it_streams(server, path, content_type, preamble):
    client = httpx.Client(base_url=server.url)
    before = snapshot(client)
    peak_before = server.peak_rss_mb()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sent = send_until_answered(
            sock, chunked_request(path, content_type) + preamble, b"7" * 65536, INTENDED
        )
        status, body = read_response(sock)
    assert status == 413, body
    assert "LABELCUT_MAX_UPLOAD_MB" in body["detail"]
    # The server answered long before the client finished: what got out is the limit plus
    # what socket buffers hold, far from the 256 MB the client meant to send.
    assert sent < 48 * 2**20, sent
    assert server.peak_rss_mb() - peak_before < 48
    assert snapshot(client) == before
    assert client.get("/healthz").status_code == 200


def test_body_under_the_limit_is_accepted(server, yeast_npz_bytes):
    assert len(yeast_npz_bytes) < MAX_UPLOAD_MB * 2**20
    response = httpx.post(
        server.url + "/tune-thresholds",
        files={"file": ("v.npz", yeast_npz_bytes)},
        data={"activate": "false"},
        timeout=60,
    )
    assert response.status_code == 200, response.text


def test_batch_rows_limit(server):
    client = httpx.Client(base_url=server.url, timeout=30)
    before = snapshot(client)
    over = client.post("/predict", json={"inputs": [[0.0] * 103] * (MAX_BATCH_ROWS + 1)})
    assert over.status_code == 413
    assert over.json()["detail"] == (
        f"inputs has {MAX_BATCH_ROWS + 1} rows, over the limit of {MAX_BATCH_ROWS} rows per "
        "request (LABELCUT_MAX_BATCH_ROWS); split the batch."
    )
    at = client.post("/predict", json={"inputs": [[0.0] * 103] * MAX_BATCH_ROWS})
    assert at.status_code == 200 and len(at.json()["predictions"]) == MAX_BATCH_ROWS
    assert snapshot(client) == before
