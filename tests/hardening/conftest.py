"""Shared pieces of the hardening suite: a real server process, an in-process client,
the yeast data, and a snapshot of the threshold store as the API shows it."""

from __future__ import annotations

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

from ..support.server import Server

LOOPBACK = ("127.0.0.1", 50000)


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


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """`serve(env=..., data_dir=...)` starts a ready server; all are stopped at the end."""
    started: list[Server] = []

    def start(env: dict[str, str] | None = None, data_dir: Path | None = None) -> Server:
        server = Server(data_dir or tmp_path / "data", env=env)
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
