"""Fixtures for in-process API tests: a real app, its lifespan and a real SQLite store."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from models import YEAST_TEST

LOOPBACK = ("127.0.0.1", 50000)


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"not ready: {client.get('/readyz').json()}")


def make_client(tmp_path, client=LOOPBACK, **overrides) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", device="cpu", **overrides)
    return TestClient(create_app(settings), client=client)


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    with make_client(tmp_path) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="session")
def yeast_test() -> dict[str, np.ndarray]:
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def yeast_npz_bytes() -> bytes:
    return YEAST_TEST.read_bytes()
