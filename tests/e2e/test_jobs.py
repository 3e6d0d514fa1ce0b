"""Tune jobs against a real `labelcut serve` on loopback: the Python client through a job
(sync and async), a `source=` dataset tuned exactly as the same rows uploaded, progress,
cancel, and a job left running by a SIGKILL read back failed after the restart."""

from __future__ import annotations

import asyncio
import time

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelcut import AsyncClient, Client
from labelcut.app.client import JobError
from labelcut.models import YEAST_TEST

from ..support.job_datasets import score_npz, write_score_dataset
from ..support.server import Server

pytestmark = pytest.mark.e2e
FINISHED = ("succeeded", "failed", "cancelled")


def started(tmp_path, name: str = "data", **env: str) -> Server:
    return Server(tmp_path / name, env=env).wait_ready()


def same_set(a: dict, b: dict) -> None:
    """Two tune answers hold the same stored set (their ids and times aside)."""
    assert a["thresholds"] == b["thresholds"]
    assert a["per_label"] == b["per_label"] and a["summary"] == b["summary"]
    for key in ("objective", "n_samples", "decision_rule", "model_sha256"):
        assert a["threshold_set"][key] == b["threshold_set"][key], key


def poll(http: httpx.Client, location: str, until=FINISHED, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(location).json()
        if job["state"] in until:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job still {job['state']}: {job}")


def test_the_client_follows_a_job_to_the_synchronous_result(tmp_path):
    server = started(tmp_path)
    try:
        with Client(server.url) as lc:
            sync = lc.tune(YEAST_TEST, n_bootstrap=20, activate=False)
            via_job = lc.tune(YEAST_TEST, n_bootstrap=20, activate=False, job=True, poll_s=0.05)
            same_set(sync, via_job)
            assert via_job["threshold_set"]["id"] == sync["threshold_set"]["id"] + 1
            queued = lc.tune(YEAST_TEST, n_bootstrap=0, job=True, wait=False)
            assert queued["state"] in ("queued", "running") and len(queued["id"]) == 32
            done = lc.wait_job(queued["id"], poll_s=0.05)
            assert done["state"] == "succeeded" and done["result"]["threshold_set"]["active"]
            assert lc.job(queued["id"])["threshold_set_id"] == done["threshold_set_id"]
            assert [j["id"] for j in lc.jobs(limit=1)] == [queued["id"]]
            with pytest.raises(Exception) as refused:
                lc.cancel_job(queued["id"])
            assert refused.value.status_code == 409

        async def through_async() -> dict:
            async with AsyncClient(server.url) as lc:
                return await lc.tune(
                    YEAST_TEST, n_bootstrap=20, activate=False, job=True, poll_s=0.05
                )

        same_set(sync, asyncio.run(through_async()))
    finally:
        server.stop()


def test_a_source_dataset_tunes_as_its_rows_uploaded(tmp_path):
    root = tmp_path / "datasets"
    dataset = write_score_dataset(root / "yeast", files=4)
    server = started(tmp_path, LABELCUT_DATA_SOURCES=str(root))
    try:
        with Client(server.url) as lc:
            form = {"n_bootstrap": 0, "estimate": False, "activate": False, "strategy": "shrunk"}
            sync = lc.tune(score_npz(tmp_path / "same.npz"), **form)
            queued = lc.tune(source=str(dataset), wait=False, **form)
            assert queued["kind"] == "source" and queued["source"] == str(dataset)
            done = lc.wait_job(queued["id"], poll_s=0.05)
            assert done["state"] == "succeeded", done
            same_set(sync, done["result"])
            progress = done["progress"]
            # Small files share a partition (about 32 MB decoded each): 4 tiny files, one.
            assert progress["partitions_done"] == progress["partitions"] == 1
            assert progress["rows_done"] == progress["rows"] == 917
            stored = lc.get(done["threshold_set_id"])
            assert stored["threshold_set"]["data_sha256"] == "unknown"
            rates = stored["threshold_set"]["params"]["expected"]["positive_rate"]
            synced = sync["threshold_set"]["params"]["expected"]["positive_rate"]
            assert rates == pytest.approx(synced, abs=1e-12)
            # Through a glob of the files, the same thresholds again.
            again = lc.tune(source=str(dataset / "part-*.parquet"), poll_s=0.05, **form)
            assert again["thresholds"] == sync["thresholds"]
            # A bad dataset: the job fails with the engine's reason, and nothing is stored.
            bad = write_score_dataset(root / "bad", files=2)
            table = pq.read_table(bad / "part-0001.parquet")
            broken = table.set_column(
                0, table.schema.field(0), pa.array([2] * table.num_rows, pa.uint8())
            )
            pq.write_table(broken, bad / "part-0001.parquet")
            before = len(lc.history())
            with pytest.raises(JobError) as failed:
                lc.tune(source=str(bad), poll_s=0.05, **form)
            assert failed.value.state == "failed" and "Class1" in str(failed.value.detail)
            assert len(lc.history()) == before
    finally:
        server.stop()


def test_cancel_then_a_restart_fails_the_job_it_interrupted(tmp_path):
    env = {"LABELCUT_TEST_ONLY_JOB_DELAY_S": "120"}
    server = started(tmp_path, **env)
    with server.client() as http:
        form = {"job": "true", "n_bootstrap": "0"}
        files = {"file": ("v.npz", YEAST_TEST.read_bytes())}
        first = http.post("/tune-thresholds", files=files, data=form)
        assert first.status_code == 202, first.text
        location = first.headers["location"]
        running = poll(http, location, until=("running",))
        assert http.get("/healthz", timeout=2).json() == {"status": "ok"}  # not blocked
        later = poll(http, location, until=("running",))
        assert later["progress"]["elapsed_s"] >= running["progress"]["elapsed_s"]
        assert http.delete(location).status_code == 202
        assert poll(http, location, timeout=10)["state"] == "cancelled"
        assert http.get("/thresholds/history").json()["items"] == []
        second = http.post("/tune-thresholds", files=files, data=form)
        interrupted = second.headers["location"]
        poll(http, interrupted, until=("running",))
    server.kill()
    again = Server(server.data_dir, env=env).wait_ready()
    try:
        with again.client() as http:
            job = poll(http, interrupted, until=("failed",), timeout=30)
            assert job["error"].startswith("interrupted by a restart"), job
            assert poll(http, location)["state"] == "cancelled"  # the record survived
            assert http.get("/thresholds/history").json()["items"] == []
    finally:
        again.stop()


def test_a_clean_shutdown_fails_the_jobs_it_stops(tmp_path):
    env = {"LABELCUT_TEST_ONLY_JOB_DELAY_S": "120"}
    server = started(tmp_path, **env)
    with server.client() as http:
        answer = http.post(
            "/tune-thresholds",
            files={"file": ("v.npz", YEAST_TEST.read_bytes())},
            data={"job": "true"},
        )
        location = answer.headers["location"]
        poll(http, location, until=("running",))
    server.stop()  # SIGTERM: the lifespan ends, and with it the job
    again = Server(server.data_dir, env=env).wait_ready()
    try:
        with again.client() as http:
            job = http.get(location).json()
            assert job["state"] == "failed", job
            assert job["error"] == (
                "interrupted by a restart: the server shut down before it finished."
            )
    finally:
        again.stop()
