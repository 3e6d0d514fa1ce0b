"""Measuring a real server while a hostile request runs: its peak memory over the level
before the request, and how long `/healthz` takes meanwhile."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


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


_PROBE = """
import json, signal, sys, time
import httpx

url, interval, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
latencies = []
print("ready", flush=True)
with httpx.Client(timeout=timeout) as client:
    # At least two samples, however quick the work was.
    while not stopping or len(latencies) < 2:
        start = time.perf_counter()
        try:
            ok = client.get(url).status_code == 200
        except httpx.HTTPError:
            ok = False
        took = time.perf_counter() - start
        latencies.append(took if ok else timeout)
        time.sleep(interval)
print(json.dumps(latencies), flush=True)
"""


class HealthProbe:
    """Polls GET `path` (/healthz) every `interval` s; `worst` is the slowest answer (a
    request that fails or times out counts as its timeout).

    It polls from a process of its own: in the test's process the probe's thread waits for
    the GIL behind the test's other client threads (45 concurrent uploads), which would add
    their scheduling to the server's latency."""

    def __init__(
        self, url: str, interval: float = 0.05, timeout: float = 5.0, path: str = "/healthz"
    ) -> None:
        self.url, self.interval, self.timeout, self.path = url, interval, timeout, path
        self.latencies: list[float] = []
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> HealthProbe:
        args = [self.url + self.path, str(self.interval), str(self.timeout)]
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PROBE, *args], stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        assert self._process.stdout.readline().strip() == "ready", "the probe did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        out, _ = self._process.communicate(timeout=30)
        self.latencies = json.loads(out.strip().splitlines()[-1])

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
