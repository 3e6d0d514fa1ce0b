"""Measuring a real server while a hostile request runs: its peak memory over the level
before the request, and how long `/healthz` takes meanwhile."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class PeakMemory:
    """Resets the process's high-water mark (`clear_refs` 5) and reports how far its
    resident memory rose above the level at the reset."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        self.base_kb = _status_kb(pid, "VmRSS")

    def grew_mb(self) -> float:
        return (_status_kb(self.pid, "VmHWM") - self.base_kb) / 1024


class HealthProbe:
    """Polls GET `path` (/healthz) from a thread every `interval` s; `worst` is the slowest
    answer (a request that fails or times out counts as its timeout)."""

    def __init__(
        self, url: str, interval: float = 0.05, timeout: float = 5.0, path: str = "/healthz"
    ) -> None:
        self.url, self.interval, self.timeout, self.path = url, interval, timeout, path
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    ok = client.get(self.url + self.path).status_code == 200
                except httpx.HTTPError:
                    ok = False
                took = time.perf_counter() - start
                self.latencies.append(took if ok else self.timeout)
                time.sleep(self.interval)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 10
        while len(self.latencies) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # at least two samples, however quick the work was
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def worst(self) -> float:
        assert self.latencies, "the probe took no sample"
        return max(self.latencies)


def read_http_response(sock: socket.socket, timeout: float = 30) -> tuple[int, dict, bytes]:
    """Status, headers (lower-case names) and body of the one response on `sock`."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def send_until_answered(sock: socket.socket, first: bytes, piece: bytes, total: int) -> int:
    """Send `first`, then `piece` repeatedly (raw, no framing) until `total` bytes are out
    or the server answers or closes; returns how many bytes of `piece` went out."""
    sock.sendall(first)
    sock.setblocking(False)
    sent = 0
    pending = b""
    try:
        while sent < total:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                pass
            if not pending:
                pending = piece
                sent += len(piece)
            try:
                pending = pending[sock.send(pending) :]
            except BlockingIOError:
                time.sleep(0.001)
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.setblocking(True)
    return sent
