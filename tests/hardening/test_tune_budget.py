"""Issue 12, case 7, against a real server: tunes run on their own bounded pool under one
memory budget (LABELCUT_MAX_DATA_MB), so /healthz and /readyz stay quick behind a long
tune and 45 queued ones; a tune that does not fit waits, then gets 503 with Retry-After,
and one that could never fit gets 413 at once."""

from __future__ import annotations

import io
import threading
import time
from functools import cache

import httpx
import numpy as np
import pytest

from .conftest import snapshot
from .probes import HealthProbe

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_DATA_MB = 64  # the budget; a tune holds 3x its data, so one upload takes <= 21.3 MB
WAIT_S = 2


@cache
def scores_npz(n_rows: int) -> bytes:
    """(n_rows, 14) float32 scores with 0/1 labels: 70 bytes a row once decoded."""
    rng = np.random.default_rng(n_rows)
    y = (rng.random((n_rows, 14)) < 0.3).astype(np.uint8)
    scores = np.clip(y * 0.3 + rng.random((n_rows, 14)) * 0.7, 0, 1).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, scores=scores, Y=y)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory, yeast_npz_bytes):
    from ..support.server import Server

    s = Server(
        tmp_path_factory.mktemp("tune-budget") / "data",
        env={"LABELCUT_MAX_DATA_MB": str(MAX_DATA_MB), "LABELCUT_TUNE_WAIT_S": str(WAIT_S)},
    )
    try:
        s.wait_ready()
        seeded = httpx.post(
            s.url + "/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}, timeout=60
        )
        assert seeded.status_code == 200, seeded.text
        yield s
    finally:
        s.stop()


def tune(server, content: bytes, **form: str) -> httpx.Response:
    return server.client(timeout=300).post(
        "/tune-thresholds", files={"file": ("v.npz", content)}, data=form
    )


class Background:
    """One request in a thread; `.result` once joined."""

    def __init__(self, send) -> None:
        self.result: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(send,))
        self._thread.start()

    def _run(self, send) -> None:
        self.result = send()

    def join(self) -> httpx.Response:
        self._thread.join(300)
        assert self.result is not None
        return self.result


def test_health_stays_quick_behind_a_long_tune_and_45_queued(server, yeast_npz_bytes):
    before = snapshot(server.client())
    # 200k x 14 scores (14 MB decoded, 42 MB of the 64 MB budget), 10,000 replicates:
    # about 10 s on two cores.
    long_tune = scores_npz(200_000)
    with HealthProbe(server.url) as health, HealthProbe(server.url, path="/readyz") as ready:
        first = Background(lambda: tune(server, long_tune, n_bootstrap="10000", store="false"))
        time.sleep(1.0)
        queued = [
            Background(lambda: tune(server, yeast_npz_bytes, n_bootstrap="0", store="false"))
            for _ in range(45)
        ]
        # Meanwhile a second big one does not fit beside the first: 503 after the wait.
        start = time.monotonic()
        busy = tune(server, long_tune, n_bootstrap="0", store="false")
        waited = time.monotonic() - start
        answers = [q.join() for q in queued]
        long_answer = first.join()
    print(
        f"worst /healthz {health.worst * 1000:.0f} ms, /readyz {ready.worst * 1000:.0f} ms "
        f"over {len(health.latencies)} samples; queued: "
        f"{sum(a.status_code == 200 for a in answers)} x 200, "
        f"{sum(a.status_code == 503 for a in answers)} x 503"
    )
    assert long_answer.status_code == 200, long_answer.text[:500]
    assert health.worst < 0.5, sorted(health.latencies)[-5:]
    assert ready.worst < 0.5, sorted(ready.latencies)[-5:]
    assert busy.status_code == 503, busy.text[:500]
    assert busy.headers["retry-after"] == str(WAIT_S)
    assert "LABELCUT_MAX_DATA_MB" in busy.json()["detail"]
    assert WAIT_S - 0.2 <= waited < WAIT_S + 5
    for answer in answers:
        assert answer.status_code in (200, 503), answer.text[:500]
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == str(WAIT_S)
    assert any(a.status_code == 200 for a in answers)
    assert snapshot(server.client()) == before
    # The budget is whole again once the tunes are done.
    again = tune(server, long_tune, n_bootstrap="0", store="false")
    assert again.status_code == 200, again.text[:500]


def test_a_tune_that_could_never_fit_is_413_at_once(server):
    before = snapshot(server.client())
    start = time.monotonic()
    # 400k x 14 scores: 28 MB decoded, 84 MB held, over the whole 64 MB budget.
    answer = tune(server, scores_npz(400_000), n_bootstrap="0")
    assert answer.status_code == 413, answer.text[:500]
    detail = answer.json()["detail"]
    assert "LABELCUT_MAX_DATA_MB" in detail and "21.3 MB" in detail
    assert time.monotonic() - start < WAIT_S  # no waiting for what can never fit
    assert snapshot(server.client()) == before
