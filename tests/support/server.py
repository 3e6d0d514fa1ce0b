"""A real `labelcut serve` process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`labelcut serve` in its own process, logging to a file beside `data_dir`.

    `extra` goes on the command line (e.g. "--model", DIR); `env` adds variables to an
    environment cleared of the caller's LABELCUT_* settings.
    """

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        cmd = [sys.executable, "-m", "labelcut.app.cli", "serve", "--port", str(self.port)]
        cmd += ["--data-dir", str(data_dir), "--device", "cpu", "--log-level", "warning"]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LABELCUT_")}
        self.proc = subprocess.Popen(
            [*cmd, *extra],
            cwd=REPO,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env={**clean, **(env or {})},
        )

    def wait_ready(self, timeout: float = 60) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready: {self.log.read_text()}")

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def peak_rss_mb(self) -> float:
        """The process's high-water mark of resident memory (Linux: VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as after a power cut or the OOM killer."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def stop(self) -> int:
        """SIGTERM and wait; uvicorn re-raises the signal after a clean shutdown (-15)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode
