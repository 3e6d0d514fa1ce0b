"""`kill -9` a real server in the middle of a tune or of a storm of activations, restart
it on the same data directory, and find one whole active set, equal to a stored one."""

from __future__ import annotations

import io
import sqlite3
import threading
import time

import httpx
import numpy as np
import pytest

from ..support.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

N_LABELS = 14


# The big upload must tune inside the request (the path this test kills), not as a job
# (uploads above LABELCUT_JOB_UPLOAD_MB, 64 MB by default, answer 202).
SYNC_TUNES = {"LABELCUT_JOB_UPLOAD_MB": "100000"}


def post_tune(url: str, content: bytes, **form) -> httpx.Response:
    return httpx.post(
        url + "/tune-thresholds", files={"file": ("v.npz", content)}, data=form, timeout=120
    )


def assert_one_whole_active_set(server: Server, must_have: set[int]) -> int:
    """The restarted server's store opens, every stored set reads back whole, exactly one
    is active, and what /thresholds serves is that stored set; returns its id."""
    client = httpx.Client(base_url=server.url, timeout=30)
    items = client.get("/thresholds/history", params={"limit": 1000}).json()["items"]
    ids = {item["id"] for item in items}
    assert must_have <= ids, (must_have, ids)
    active_items = [item for item in items if item["active"]]
    assert len(active_items) == 1, active_items
    stored = {}
    for set_id in ids:
        report = client.get(f"/thresholds/{set_id}").json()
        assert len(report["thresholds"]) == N_LABELS and len(report["per_label"]) == N_LABELS
        stored[set_id] = report["thresholds"]
    active = client.get("/thresholds").json()
    assert active["threshold_set"]["id"] == active_items[0]["id"]
    assert active["thresholds"] == stored[active["threshold_set"]["id"]]
    # Predictions use it too, and the store still takes writes.
    row = {"inputs": [[0.0] * 103]}
    assert client.post("/predict", json=row).json()["threshold_set_id"] == active_items[0]["id"]
    # The file itself is sound (SQLite's own check), with one pointer per model.
    with sqlite3.connect(server.data_dir / "thresholds.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        pointers = db.execute("SELECT model_sha256, set_id FROM active_sets").fetchall()
    assert len(pointers) == 1 and pointers[0][1] == active_items[0]["id"]
    return active_items[0]["id"]


def big_file(yeast, rows: int = 200_000) -> bytes:
    reps = -(-rows // len(yeast["X"]))
    buf = io.BytesIO()
    np.savez(
        buf,
        X=np.tile(yeast["X"].astype(np.float32), (reps, 1))[:rows],
        Y=np.tile(yeast["Y"], (reps, 1))[:rows],
    )
    return buf.getvalue()


def test_sigkill_mid_tune_leaves_one_whole_active_set(tmp_path, yeast, yeast_npz_bytes):
    data_dir = tmp_path / "data"
    big = big_file(yeast)
    server = Server(data_dir, env=SYNC_TUNES).wait_ready()
    try:
        first = post_tune(server.url, yeast_npz_bytes).json()["threshold_set"]["id"]
        start = time.monotonic()
        assert post_tune(server.url, big, activate="false").status_code == 200
        full = time.monotonic() - start
        known = {first, first + 1}
    finally:
        server.kill()
    # Kill at several points of the same tune: while the body uploads, while the model
    # scores, and near the end when the set is written and activated.
    for fraction in (0.2, 0.6, 0.9):
        server = Server(data_dir, env=SYNC_TUNES).wait_ready()
        try:
            active = assert_one_whole_active_set(server, known)
            thread = threading.Thread(
                target=lambda url=server.url: _ignore_errors(post_tune, url, big, objective="f1")
            )
            thread.start()
            time.sleep(full * fraction)
        finally:
            server.kill()
        thread.join(timeout=30)
        assert server.proc.returncode == -9
    server = Server(data_dir, env=SYNC_TUNES).wait_ready()
    try:
        now_active = assert_one_whole_active_set(server, known)
        # Either the tune never committed (the earlier set stays) or it did whole.
        assert now_active == active or now_active > max(known)
        assert post_tune(server.url, yeast_npz_bytes).status_code == 200
    finally:
        server.stop()


def test_sigkill_during_activations_and_tunes(tmp_path, yeast_npz_bytes):
    data_dir = tmp_path / "data"
    server = Server(data_dir).wait_ready()
    try:
        ids = [
            post_tune(server.url, yeast_npz_bytes, **form).json()["threshold_set"]["id"]
            for form in ({"objective": "f1"}, {"objective": "fbeta", "beta": "2"})
        ]
    finally:
        server.kill()
    for delay in (0.5, 1.1):
        server = Server(data_dir).wait_ready()
        stop = threading.Event()
        counts = {"activations": 0}
        threads = [
            threading.Thread(target=_flip, args=(server.url, ids, stop, counts)),
            threading.Thread(target=_tunes, args=(server.url, yeast_npz_bytes, stop)),
        ]
        try:
            assert_one_whole_active_set(server, set(ids))
            for thread in threads:
                thread.start()
            time.sleep(delay)
        finally:
            server.kill()
            stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert counts["activations"] > 5
    server = Server(data_dir).wait_ready()
    try:
        assert_one_whole_active_set(server, set(ids))
    finally:
        server.stop()


def _flip(url: str, ids: list[int], stop: threading.Event, counts: dict) -> None:
    """Activate the sets in turn, as fast as the server answers, until stopped or killed."""
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            try:
                client.post(f"/thresholds/{ids[counts['activations'] % len(ids)]}/activate")
            except httpx.TransportError:
                return
            counts["activations"] += 1


def _tunes(url: str, content: bytes, stop: threading.Event) -> None:
    while not stop.is_set():
        if _ignore_errors(post_tune, url, content) is None:
            return


def _ignore_errors(fn, *args, **kwargs):
    """Calls cut short by the kill end in a transport error; that is the point."""
    try:
        return fn(*args, **kwargs)
    except httpx.TransportError:
        return None
