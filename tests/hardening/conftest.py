"""Shared pieces of the hardening suite: a real server process, an in-process client,
the yeast data, and a snapshot of the threshold store as the API shows it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from labelcut.models import YEAST_TEST

from ..support.server import Server

# --- in process --------------------------------------------------------------------------


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
