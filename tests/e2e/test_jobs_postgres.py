"""Tune jobs on a PostgreSQL store shared by two real servers: a job run by one is read
(state, moving progress) and cancelled through the other, and a job left running by a
SIGKILL reads failed, with the reason, on both."""

from __future__ import annotations

import time

import httpx
import pytest

from labelcut.models import YEAST_TEST

from ..support.postgres import fresh_database, postgres  # noqa: F401
from ..support.server import Server

pytestmark = pytest.mark.e2e
FINISHED = ("succeeded", "failed", "cancelled")


def poll(http: httpx.Client, location: str, until, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(location).json()
        if job["state"] in until:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job still {job['state']}: {job}")


def start_job(http: httpx.Client) -> str:
    answer = http.post(
        "/tune-thresholds",
        files={"file": ("v.npz", YEAST_TEST.read_bytes())},
        data={"job": "true", "n_bootstrap": "0"},
    )
    assert answer.status_code == 202, answer.text
    return answer.headers["location"]


def test_replicas_share_jobs_cancel_across_them_and_restarts_fail_them(tmp_path, postgres):  # noqa: F811
    env = {
        "LABELCUT_DATABASE_URL": fresh_database(postgres),
        "LABELCUT_TEST_ONLY_JOB_DELAY_S": "120",
    }
    a = Server(tmp_path / "a", env=env).wait_ready()
    b = Server(tmp_path / "b", env=env).wait_ready()
    try:
        with a.client() as on_a, b.client() as on_b:
            location = start_job(on_a)
            first = poll(on_b, location, until=("running",))
            later = first
            deadline = time.monotonic() + 10
            while later["progress"]["elapsed_s"] <= first["progress"]["elapsed_s"]:
                assert time.monotonic() < deadline, later
                time.sleep(0.1)
                later = on_b.get(location).json()
            assert later["state"] == "running"  # progress written by a, read through b
            assert on_b.delete(location).status_code == 202
            cancelled = poll(on_a, location, until=FINISHED, timeout=15)
            assert cancelled["state"] == "cancelled", cancelled
            assert on_b.get("/thresholds/history").json()["items"] == []
            interrupted = start_job(on_a)
            poll(on_b, interrupted, until=("running",))
        a.kill()  # whichever notices first (b's sweep, or a at its start) fails the job
        a = Server(tmp_path / "a", env=env).wait_ready()
        with b.client() as on_b:
            job = poll(on_b, interrupted, until=("failed",), timeout=30)
            assert job["error"].startswith("interrupted by a restart"), job
    finally:
        a.stop()
        b.stop()
