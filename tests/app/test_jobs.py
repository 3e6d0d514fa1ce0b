"""Tune jobs in process, on SQLite and PostgreSQL: 202 and polling to the synchronous
tune's result, store=false, progress, cancel (running and queued), the memory budget, and
the refusals (404, 409, 413)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ..support.inprocess import app_client, wait_ready
from ..support.postgres import fresh_database, postgres  # noqa: F401

FINISHED = ("succeeded", "failed", "cancelled")


def upload(body: bytes, name: str = "v.npz") -> dict:
    return {"file": (name, body)}


def poll(client: TestClient, location: str, until=FINISHED, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(location)
        assert answer.status_code == 200, answer.text
        job = answer.json()
        if job["state"] in until:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job still {job['state']} after {timeout} s: {job}")


def sets_count(client: TestClient) -> int:
    return len(client.get("/thresholds/history", params={"all_models": "true"}).json()["items"])


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, monkeypatch) -> str:
    if request.param == "postgresql":
        monkeypatch.setenv(
            "LABELCUT_DATABASE_URL", fresh_database(request.getfixturevalue("postgres"))
        )
    else:
        monkeypatch.delenv("LABELCUT_DATABASE_URL", raising=False)
    return request.param


@pytest.fixture
def make(tmp_path, backend) -> Iterator:
    """make(**settings) -> a ready TestClient on a fresh data directory (closed at the end)."""
    opened = []

    def start(**overrides) -> TestClient:
        client = app_client(tmp_path / f"data{len(opened)}", **overrides)
        client.__enter__()
        opened.append(client)
        wait_ready(client)
        return client

    yield start
    for client in opened:
        client.__exit__(None, None, None)


def comparable(report: dict) -> dict:
    """A tune's answer without what differs between two stored copies (id, time, active)."""
    info = dict(report["threshold_set"])
    for key in ("id", "created_at", "active"):
        info.pop(key)
    return {**report, "threshold_set": info}


def test_a_job_answers_202_and_stores_what_a_synchronous_tune_stores(make, yeast_npz_bytes):
    client = make()
    form = {"n_bootstrap": "20", "objective": "fbeta", "beta": "2", "activate": "false"}
    sync = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data=form)
    assert sync.status_code == 200, sync.text
    queued = client.post(
        "/tune-thresholds", files=upload(yeast_npz_bytes), data={**form, "job": "true"}
    )
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert queued.headers["location"] == f"/jobs/{job['id']}"
    assert job["state"] == "queued" and job["kind"] == "upload" and job["result"] is None
    assert job["source"] == "v.npz" and job["options"]["objective"] == "fbeta"
    done = poll(client, queued.headers["location"])
    assert done["state"] == "succeeded", done
    assert done["error"] is None and done["finished_at"] >= done["started_at"]
    assert done["progress"]["rows_done"] == done["progress"]["rows"] == 917
    assert done["progress"]["partitions_done"] == done["progress"]["partitions"] == 1
    result = done["result"]
    assert (
        result["threshold_set"]["id"]
        == done["threshold_set_id"]
        != sync.json()["threshold_set"]["id"]
    )
    assert comparable(result) == comparable(sync.json())
    stored = client.get(f"/thresholds/{done['threshold_set_id']}").json()
    assert stored["thresholds"] == sync.json()["thresholds"]
    assert stored["threshold_set"]["data_sha256"] == sync.json()["threshold_set"]["data_sha256"]
    first, second = (
        client.get(f"/thresholds/{i}/curves").json()["curves"]
        for i in (sync.json()["threshold_set"]["id"], done["threshold_set_id"])
    )
    assert first == second
    assert client.get("/thresholds").json()["threshold_set"] is None  # activate=false held
    spool = client.app.state.jobs.spool_dir
    assert spool.is_dir() and list(spool.iterdir()) == []  # the upload's copy is gone


def test_an_activating_job_activates_its_set(make, yeast_npz_bytes):
    client = make()
    queued = client.post(
        "/tune-thresholds", files=upload(yeast_npz_bytes), data={"n_bootstrap": "0", "job": "true"}
    )
    done = poll(client, queued.headers["location"])
    assert client.get("/thresholds").json()["threshold_set"]["id"] == done["threshold_set_id"]


def test_a_store_false_job_answers_the_report_and_stores_nothing(make, yeast_npz_bytes):
    client = make()
    form = {"n_bootstrap": "0", "store": "false"}
    sync = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data=form).json()
    queued = client.post(
        "/tune-thresholds", files=upload(yeast_npz_bytes), data={**form, "job": "true"}
    )
    done = poll(client, queued.headers["location"])
    assert done["state"] == "succeeded" and done["threshold_set_id"] is None
    assert done["result"] == sync and sync["stored"] is False
    assert sets_count(client) == 0


def test_uploads_over_the_job_size_run_as_jobs_and_small_ones_answer_at_once(make, yeast_npz_bytes):
    # The yeast split declares 0.38 MB of arrays: over 0.2 MB it is a job, under 64 MB not.
    client = make(job_upload_mb=0.2)
    assert client.post("/tune-thresholds", files=upload(yeast_npz_bytes)).status_code == 202
    other = make()
    assert other.post("/tune-thresholds", files=upload(yeast_npz_bytes)).status_code == 200


def test_progress_moves_while_a_job_runs(make, yeast_npz_bytes):
    client = make(test_only_job_delay_s=2.5)
    queued = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data={"job": "true"})
    location = queued.headers["location"]
    running = poll(client, location, until=("running",))
    seen = [running["progress"]["elapsed_s"]]
    while len(seen) < 3:
        job = client.get(location).json()
        if job["state"] != "running":
            break
        if job["progress"]["elapsed_s"] > seen[-1]:
            seen.append(job["progress"]["elapsed_s"])
        time.sleep(0.1)
    assert len(seen) >= 3 and seen == sorted(seen), seen
    assert client.get("/healthz").status_code == 200
    done = poll(client, location)
    assert done["state"] == "succeeded" and done["progress"]["elapsed_s"] >= 2.5


def test_cancelling_a_running_job_ends_it_cancelled_and_stores_nothing(make, yeast_npz_bytes):
    client = make(test_only_job_delay_s=60)
    queued = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data={"job": "true"})
    location = queued.headers["location"]
    poll(client, location, until=("running",))
    budget = client.app.state.tune_runner.budget
    assert budget.used > 0  # an upload job holds its share of the tunes' memory budget
    answer = client.delete(location)
    assert answer.status_code == 202, answer.text
    assert answer.json()["cancel_requested"] is True
    done = poll(client, location, timeout=10)
    assert done["state"] == "cancelled" and done["result"] is None
    assert done["threshold_set_id"] is None and sets_count(client) == 0
    deadline = time.monotonic() + 5
    while budget.used and time.monotonic() < deadline:
        time.sleep(0.05)
    assert budget.used == 0
    again = client.delete(location)
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]


def test_a_queued_job_is_cancelled_at_once(make, yeast_npz_bytes):
    client = make(test_only_job_delay_s=60, job_workers=1)
    first = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data={"job": "true"})
    poll(client, first.headers["location"], until=("running",))
    second = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data={"job": "true"})
    assert client.get(second.headers["location"]).json()["state"] == "queued"
    answer = client.delete(second.headers["location"])
    assert answer.status_code == 202 and answer.json()["state"] == "cancelled"
    assert client.delete(first.headers["location"]).status_code == 202
    assert poll(client, first.headers["location"], timeout=10)["state"] == "cancelled"
    assert poll(client, second.headers["location"])["state"] == "cancelled"
    assert sets_count(client) == 0


def test_jobs_are_listed_newest_first_and_by_state(make, yeast_npz_bytes):
    client = make()
    ids = []
    for _ in range(3):
        queued = client.post(
            "/tune-thresholds",
            files=upload(yeast_npz_bytes),
            data={"job": "true", "n_bootstrap": "0"},
        )
        ids.append(poll(client, queued.headers["location"])["id"])
    listed = client.get("/jobs").json()["items"]
    assert [job["id"] for job in listed] == ids[::-1]
    assert all(job["result"] is None for job in listed)  # results only on /jobs/{id}
    assert len(client.get("/jobs", params={"state": "succeeded", "limit": 2}).json()["items"]) == 2
    assert client.get("/jobs", params={"state": "running"}).json()["items"] == []
    assert client.get("/jobs", params={"state": "nonsense"}).status_code == 422
    assert client.get("/jobs", params={"bogus": "1"}).status_code == 422


def test_unknown_and_malformed_job_ids_are_404(make):
    client = make()
    for job_id in ("0" * 32, "not-a-job", "1", "'; DROP TABLE tune_jobs; --"):
        assert client.get(f"/jobs/{job_id}").status_code == 404
        assert client.delete(f"/jobs/{job_id}").status_code == 404
    assert client.get("/jobs").json() == {"items": []}


def test_an_upload_that_could_never_fit_the_budget_is_413_and_queues_nothing(make, yeast_npz_bytes):
    client = make(max_data_mb=1.0)  # the yeast split (0.38 MB of arrays) needs 3x: 1.13 MB
    answer = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data={"job": "true"})
    assert answer.status_code == 413, answer.text
    assert client.get("/jobs").json() == {"items": []}


def test_a_job_with_bad_data_fails_with_the_reason(make, yeast_test):
    import io

    import numpy as np

    Y = yeast_test["Y"].copy()
    Y[6, 2] = 2
    buffer = io.BytesIO()
    np.savez(buffer, X=yeast_test["X"], Y=Y)
    client = make()
    queued = client.post("/tune-thresholds", files=upload(buffer.getvalue()), data={"job": "true"})
    done = poll(client, queued.headers["location"])
    assert done["state"] == "failed" and "row 7" in done["error"], done
    assert sets_count(client) == 0


def test_bad_options_are_refused_before_a_job_is_queued(make, yeast_npz_bytes):
    client = make()
    answer = client.post(
        "/tune-thresholds",
        files=upload(yeast_npz_bytes),
        data={"job": "true", "objective": "recall_at_precision"},
    )
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "target"]
    missing = client.post("/tune-thresholds", data={"objective": "f1"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "file"]
    assert client.get("/jobs").json() == {"items": []}


def test_jobs_full_is_503(make, yeast_npz_bytes):
    client = make(test_only_job_delay_s=60, max_jobs=1)
    first = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data={"job": "true"})
    assert first.status_code == 202
    second = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data={"job": "true"})
    assert second.status_code == 503 and "LABELCUT_MAX_JOBS" in second.json()["detail"]
    assert second.headers["retry-after"]
    client.delete(first.headers["location"])
    assert poll(client, first.headers["location"], timeout=10)["state"] == "cancelled"


def test_an_upload_job_waits_queued_until_the_memory_budget_has_room(make, yeast_npz_bytes):
    # Each yeast job holds 3 x 0.38 MB of a 2 MB budget: the second cannot run beside the
    # first, though a second job thread is free, and runs once the first has ended.
    client = make(test_only_job_delay_s=60, job_workers=2, max_data_mb=2.0)
    first = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data={"job": "true"})
    poll(client, first.headers["location"], until=("running",))
    second = client.post("/tune-thresholds", files=upload(yeast_npz_bytes), data={"job": "true"})
    time.sleep(0.5)
    assert client.get(second.headers["location"]).json()["state"] == "queued"
    assert client.delete(first.headers["location"]).status_code == 202
    assert poll(client, second.headers["location"], until=("running",))["state"] == "running"
    assert client.delete(second.headers["location"]).status_code == 202
    assert poll(client, second.headers["location"], timeout=10)["state"] == "cancelled"
