"""Issue 12, cases 6 and 12, against a real server: admin routes refuse a missing or wrong
key before reading the body (no temp files, no memory), and with no key the loopback rule
treats Forwarded, X-Forwarded-For and X-Real-IP alike."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from .conftest import snapshot
from .probes import HealthProbe, PeakMemory, read_http_response

pytestmark = pytest.mark.e2e

KEY = "round-2-admin-key"
MB = 2**20
DECLARED = 300 * MB  # what the keyless client announces (under the 512 MB body limit)


def keyless_upload(port: int, auth: str | None, sent_mb: int = 8) -> tuple[int, dict, bytes]:
    """Announce a 300 MB multipart upload, send `sent_mb` of it, and read the answer."""
    boundary = "b0undary"
    head = (
        f"POST /tune-thresholds HTTP/1.1\r\nHost: x\r\nContent-Length: {DECLARED}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        + (f"Authorization: {auth}\r\n" if auth else "")
        + "\r\n"
        + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        try:
            for _ in range(sent_mb):
                sock.sendall(b"1,0,1\n" * (MB // 6))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what we want
        return read_http_response(sock)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, yeast_npz_bytes):
    from ..support.server import Server

    base = tmp_path_factory.mktemp("auth-before-body")
    spool = base / "tmp"
    spool.mkdir()
    # TMPDIR: where Starlette would spool an upload; it must stay empty.
    s = Server(base / "data", env={"LABELCUT_ADMIN_KEY": KEY, "TMPDIR": str(spool)})
    try:
        s.wait_ready()
        seeded = httpx.post(
            s.url + "/tune-thresholds",
            files={"file": ("v.npz", yeast_npz_bytes)},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=60,
        )
        assert seeded.status_code == 200, seeded.text
        s.spool = spool
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize(
    ("auth", "status", "needle"),
    [(None, 401, "needs an 'Authorization: Bearer <key>'"), ("Bearer nope", 403, "is wrong")],
    ids=["no-key", "wrong-key"],
)
def test_keyless_300_mb_upload_is_refused_before_the_body(keyed, auth, status, needle):
    before = snapshot(keyed.client())
    memory = PeakMemory(keyed.proc.pid)
    results: list = []
    with HealthProbe(keyed.url) as probe:
        # Four at once: the case that held 1.6 GB of temp files.
        threads = [
            threading.Thread(target=lambda: results.append(keyless_upload(keyed.port, auth)))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(results) == 4
    print(
        f"4 x 300 MB {auth}: {[r[0] for r in results]}, peak +{memory.grew_mb():.0f} MB, "
        f"worst /healthz {probe.worst * 1000:.0f} ms"
    )
    for got, headers, body in results:
        assert got == status, body
        assert needle in body.decode()
        assert headers["connection"] == "close"
        if status == 401:
            assert headers["www-authenticate"] == "Bearer"
    assert list(keyed.spool.iterdir()) == []  # nothing spooled
    assert memory.grew_mb() < 300, memory.grew_mb()
    assert probe.worst < 0.5, probe.latencies
    assert snapshot(keyed.client()) == before


def test_activation_and_every_admin_post_refused_before_the_body(keyed):
    before = snapshot(keyed.client())
    set_id = before[1]["items"][0]["id"]
    with keyed.client() as client:
        for path in (f"/thresholds/{set_id}/activate", "/tune-thresholds"):
            response = client.post(path, content=b"x" * 1000)
            assert response.status_code == 401, (path, response.text)
    assert snapshot(keyed.client()) == before


def test_the_right_key_still_tunes(keyed, yeast_npz_bytes):
    response = keyed.client().post(
        "/tune-thresholds",
        files={"file": ("v.npz", yeast_npz_bytes)},
        data={"store": "false"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 200, response.text


# --- the loopback rule with proxy headers (no key set) --------------------------------

REMOTE = "203.0.113.7"
PROXY_CASES = [
    ({"X-Forwarded-For": REMOTE}, False),
    ({"Forwarded": f"for={REMOTE}"}, False),
    ({"Forwarded": f'for="{REMOTE}:4711";proto=https'}, False),
    ({"Forwarded": 'for="[2001:db8:cafe::17]:4711"'}, False),
    ({"Forwarded": "for=127.0.0.1, for=198.51.100.17"}, False),  # a chain through a remote
    ({"Forwarded": "for=unknown"}, False),
    ({"Forwarded": "for=_hidden"}, False),
    ({"Forwarded": "proto=https"}, False),  # names no client at all: not trusted
    ({"X-Real-IP": REMOTE}, False),
    ({"X-Real-IP": "not an address"}, False),
    ({"Forwarded": "for=127.0.0.1"}, True),
    ({"Forwarded": 'for="[::1]:8000"'}, True),
    ({"X-Real-IP": "127.0.0.1"}, True),
    ({"X-Forwarded-For": "127.0.0.1"}, True),
    ({}, True),
]


@pytest.fixture(scope="module")
def open_server(tmp_path_factory, yeast_npz_bytes):
    from ..support.server import Server

    s = Server(tmp_path_factory.mktemp("loopback-proxies") / "data")
    try:
        s.wait_ready()
        seeded = httpx.post(
            s.url + "/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}, timeout=60
        )
        assert seeded.status_code == 200, seeded.text
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize(("headers", "allowed"), PROXY_CASES, ids=lambda v: str(v))
def test_proxy_headers_naming_a_remote_client_are_not_loopback(open_server, headers, allowed):
    client = open_server.client()
    before = snapshot(client)
    set_id = before[0]["threshold_set"]["id"]
    response = client.post(f"/thresholds/{set_id}/activate", headers=headers)
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403, response.text
        assert "open only to clients on loopback" in response.json()["detail"]
        # The refusal comes before the body: a 300 MB upload from behind the proxy too.
        status, _, body = _upload_with_headers(open_server.port, headers)
        assert status == 403, body
    assert snapshot(client) == before


def _upload_with_headers(port: int, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST /tune-thresholds HTTP/1.1\r\nHost: x\r\nContent-Length: {DECLARED}\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\n{extra}\r\n".encode()
        )
        status, response_headers, body = read_http_response(sock)
    return status, response_headers, body
