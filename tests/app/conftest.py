"""Fixtures for in-process API tests: a real app, its lifespan and a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from labelcut.models import YEAST_TEST

from ..support.inprocess import LOOPBACK, app_client, wait_ready


def make_client(tmp_path, client=LOOPBACK, **overrides) -> TestClient:
    return app_client(tmp_path / "data", client, **overrides)


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
