"""Against a real server process: predictions served while sets are activated back and
forth and while tunes run each use one whole set (the one they report), and a long tune
stalls neither /healthz nor /predict."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter

import httpx
import numpy as np
import pytest

from ..support.server import Server
from .conftest import expected_labels

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BIG_ROWS = 300_000
HALF = 0.5


def big_validation_file(yeast) -> bytes:
    """300k rows: the yeast test split repeated, as an uncompressed .npz (~120 MB)."""
    reps = -(-BIG_ROWS // len(yeast["X"]))
    x = np.tile(yeast["X"].astype(np.float32), (reps, 1))[:BIG_ROWS]
    y = np.tile(yeast["Y"], (reps, 1))[:BIG_ROWS]
    buf = io.BytesIO()
    np.savez(buf, X=x, Y=y)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Big uploads tune inside their request here (the path under test), not as jobs
    # (uploads above LABELCUT_JOB_UPLOAD_MB, 64 MB by default, answer 202).
    s = Server(
        tmp_path_factory.mktemp("concurrency") / "data",
        env={"LABELCUT_JOB_UPLOAD_MB": "100000"},
    )
    try:
        yield s.wait_ready()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def sets(server, yeast_npz_bytes) -> list[int]:
    """Three stored, inactive sets tuned for different objectives (different thresholds)."""
    ids = []
    for form in (
        {"objective": "f1"},
        {"objective": "fbeta", "beta": "0.3"},
        {"objective": "recall_at_precision", "target": "0.5"},
    ):
        response = httpx.post(
            server.url + "/tune-thresholds",
            files={"file": ("v.npz", yeast_npz_bytes)},
            data={**form, "activate": "false"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        ids.append(response.json()["threshold_set"]["id"])
    return ids


def thresholds_of(client: httpx.Client, set_id: int | None, labels: list[str]) -> dict:
    if set_id is None:
        return dict.fromkeys(labels, HALF)
    response = client.get(f"/thresholds/{set_id}")
    assert response.status_code == 200, response.text
    return response.json()["thresholds"]


def test_each_prediction_uses_the_one_set_it_reports(server, sets, yeast):
    client = httpx.Client(base_url=server.url, timeout=60)
    labels = client.get("/model").json()["labels"]
    rows = yeast["X"].astype(np.float32)
    big = big_validation_file(yeast)
    stop = threading.Event()
    responses: list[dict] = []
    errors: list[str] = []
    activations = Counter()

    def predictor(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=server.url, timeout=60) as c:
            while not stop.is_set():
                batch = rows[rng.choice(len(rows), 32, replace=False)]
                r = c.post("/predict", json={"inputs": batch.tolist()})
                if r.status_code != 200:
                    errors.append(f"predict {r.status_code}: {r.text[:200]}")
                    continue
                responses.append(r.json())

    def activator() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            i = 0
            while not stop.is_set():
                set_id = sets[i % len(sets)]
                r = c.post(f"/thresholds/{set_id}/activate")
                if r.status_code != 200:
                    errors.append(f"activate {r.status_code}: {r.text[:200]}")
                activations[set_id] += 1
                i += 1

    def tuner() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            # An objective none of the three sets has: its thresholds differ from theirs.
            r = c.post(
                "/tune-thresholds",
                files={"file": ("big.npz", big)},
                data={"objective": "fbeta", "beta": "2"},
            )
            if r.status_code != 200:
                errors.append(f"tune {r.status_code}: {r.text[:200]}")

    threads = [threading.Thread(target=predictor, args=(seed,)) for seed in range(3)]
    threads += [threading.Thread(target=activator), threading.Thread(target=tuner)]
    for thread in threads:
        thread.start()
    threads[-1].join(timeout=120)  # the tune: the hammering lasts as long as it does
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors[:5]
    assert len(responses) > 50 and sum(activations.values()) > 20
    seen = Counter(r["threshold_set_id"] for r in responses)
    assert len(seen) >= 2, seen  # activations really interleaved with predictions
    known = {set_id: thresholds_of(client, set_id, labels) for set_id in seen}
    # The sets disagree on these rows, so a prediction cut with a mix of two sets would
    # not match either: the check below can tell.
    assert len({tuple(sorted(t.items())) for t in known.values()}) == len(known)
    for response in responses:
        thresholds = known[response["threshold_set_id"]]
        for prediction in response["predictions"]:
            assert prediction["labels"] == expected_labels(prediction, labels, thresholds)


def test_a_long_tune_stalls_neither_healthz_nor_predict(server, yeast):
    big = big_validation_file(yeast)
    done = threading.Event()
    result: dict = {}

    def tune() -> None:
        start = time.monotonic()
        response = httpx.post(
            server.url + "/tune-thresholds",
            files={"file": ("big.npz", big)},
            data={"activate": "false"},
            timeout=120,
        )
        result["status"] = response.status_code
        result["seconds"] = time.monotonic() - start
        done.set()

    thread = threading.Thread(target=tune)
    latencies: dict[str, list[float]] = {"/healthz": [], "/predict": []}
    row = {"inputs": yeast["X"][:4].tolist()}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        thread.start()
        while not done.is_set():
            for path in latencies:
                start = time.monotonic()
                r = client.get(path) if path == "/healthz" else client.post(path, json=row)
                assert r.status_code == 200, r.text
                latencies[path].append(time.monotonic() - start)
            time.sleep(0.02)
    thread.join()
    assert result["status"] == 200
    # The probes overlapped a tune of several seconds, and none of them waited for it.
    assert result["seconds"] > 1.0 and len(latencies["/healthz"]) >= 10, result
    assert max(latencies["/healthz"]) < 1.0, latencies["/healthz"]
    assert max(latencies["/predict"]) < 2.0, latencies["/predict"]
