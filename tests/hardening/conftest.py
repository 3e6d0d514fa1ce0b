"""Shared pieces of the hardening suite: a real server process, an in-process client,
the yeast data, and a snapshot of the threshold store as the API shows it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from models import YEAST_TEST

LOOPBACK = ("127.0.0.1", 50000)
REPO = Path(__file__).resolve().parents[2]


# --- in process --------------------------------------------------------------------------


def make_client(data_dir: Path, client=LOOPBACK, **overrides: Any) -> TestClient:
    settings = Settings(data_dir=data_dir, device="cpu", **overrides)
    return TestClient(create_app(settings), client=client)


def wait_ready(client, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the service did not become ready")


def snapshot(client) -> tuple[dict, dict]:
    """What a client sees of the store: the active set and the whole history."""
    active = client.get("/thresholds")
    history = client.get("/thresholds/history", params={"all_models": "true"})
    assert active.status_code == 200 and history.status_code == 200
    return active.json(), history.json()


# --- a real server process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`labelcut serve` on loopback in its own process, logging to a file."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)]
        cmd += ["--data-dir", str(data_dir), "--device", "cpu", "--log-level", "warning"]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LABELCUT_")}
        self.proc = subprocess.Popen(
            cmd,
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

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """`serve(env=..., data_dir=...)` starts a ready server; all are stopped at the end."""
    started: list[Server] = []

    def start(env: dict[str, str] | None = None, data_dir: Path | None = None) -> Server:
        server = Server(data_dir or tmp_path / "data", env)
        started.append(server)
        return server.wait_ready()

    yield start
    for server in started:
        server.stop()


# --- data --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def yeast() -> dict[str, np.ndarray]:
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def yeast_npz_bytes() -> bytes:
    return YEAST_TEST.read_bytes()


def expected_labels(prediction: dict, labels: list[str], thresholds: dict[str, float]) -> list:
    """The labels a prediction must carry: score >= threshold, in model label order."""
    return [label for label in labels if prediction["scores"][label] >= thresholds[label]]
