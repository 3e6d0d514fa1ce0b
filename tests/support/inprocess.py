"""The real app in process (TestClient runs its lifespan) on a temporary data directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from labelcut.app.config import Settings
from labelcut.app.main import create_app

LOOPBACK = ("127.0.0.1", 50000)


def app_client(data_dir: Path, client=LOOPBACK, **overrides: Any) -> TestClient:
    """A TestClient for an app storing in `data_dir`; `client` is the peer's (host, port)."""
    settings = Settings(data_dir=data_dir, device="cpu", **overrides)
    return TestClient(create_app(settings), client=client)


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"not ready: {client.get('/readyz').json()}")
