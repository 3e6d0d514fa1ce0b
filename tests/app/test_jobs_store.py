"""The jobs table on SQLite and PostgreSQL: the life of a job, the cancel that races the
end of a run (nothing stored), the sweep of jobs left by dead processes, retention, and the
upgrade of a version-2 store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from labelcut.app.jobs import runner_is_gone, runner_name
from labelcut.app.store import LATEST_VERSION, NewThresholdSet, ThresholdStore
from labelcut.app.store.jobs import INTERRUPTED, JobCancelled, JobFinished, JobStore, new_job_id
from labelcut.app.store.schema import tune_jobs

from ..support.postgres import fresh_database, postgres  # noqa: F401


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        opened = ThresholdStore(tmp_path / "store.sqlite3")
    else:
        opened = ThresholdStore(url=fresh_database(request.getfixturevalue("postgres")))
    yield opened
    opened.close()


def new_set() -> NewThresholdSet:
    return NewThresholdSet(
        model_name="toy",
        model_sha256="m1" * 32,
        labels=["a", "b"],
        objective="f1",
        params={},
        data_sha256="d" * 64,
        n_samples=10,
        thresholds=[0.2, 0.7],
        result={},
    )


def create(jobs: JobStore, runner: str = "here:1:1") -> str:
    job_id = new_job_id()
    jobs.create(
        job_id=job_id,
        kind="upload",
        model_name="toy",
        model_key="k",
        source="v.npz",
        request={"objective": "f1"},
        progress={"rows_done": 0},
        runner=runner,
    )
    return job_id


def test_a_job_runs_through_its_states_and_records_its_set(store):
    jobs = JobStore(store)
    job_id = create(jobs)
    assert jobs.get(job_id).state == "queued"
    assert jobs.start(job_id) and not jobs.start(job_id)  # only a queued job starts
    assert jobs.write_progress(job_id, {"rows_done": 5}) is False
    assert jobs.get(job_id).progress == {"rows_done": 5}
    saved = store.save(
        new_set(), activate=False, within=jobs.finish_within(job_id, {"rows_done": 10})
    )
    done = jobs.get(job_id)
    assert done.state == "succeeded" and done.set_id == saved.id and done.finished_at
    assert done.progress == {"rows_done": 10}
    with pytest.raises(JobFinished):
        jobs.request_cancel(job_id)
    assert jobs.fail(job_id, "late") is False and jobs.get(job_id).state == "succeeded"


def test_a_cancel_before_the_set_is_stored_stores_nothing(store):
    jobs = JobStore(store)
    job_id = create(jobs)
    jobs.start(job_id)
    requested = jobs.request_cancel(job_id)
    assert requested.state == "running" and requested.cancel_requested
    assert jobs.write_progress(job_id, {"rows_done": 1}) is True  # the runner learns of it
    with pytest.raises(JobCancelled):
        store.save(new_set(), activate=True, within=jobs.finish_within(job_id, {}))
    assert store.count() == 0 and store.last_activation() is None  # nor activated
    assert jobs.mark_cancelled(job_id) and jobs.get(job_id).state == "cancelled"


def test_a_queued_job_is_cancelled_at_once_and_never_starts(store):
    jobs = JobStore(store)
    job_id = create(jobs)
    assert jobs.request_cancel(job_id).state == "cancelled"
    assert jobs.start(job_id) is False


def test_heartbeat_reports_cancels_requested_elsewhere(store):
    jobs = JobStore(store)
    mine, other = create(jobs, "me:1:1"), create(jobs, "them:1:1")
    for job_id in (mine, other):
        jobs.start(job_id)
        jobs.request_cancel(job_id)
    before = jobs.get(mine).heartbeat_at
    time.sleep(0.01)
    assert jobs.heartbeat("me:1:1") == [mine]
    assert jobs.get(mine).heartbeat_at > before


def test_the_sweep_fails_jobs_of_dead_processes_and_forgets_old_ones(store):
    jobs = JobStore(store)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone_here = runner_name().rsplit(":", 2)[0] + f":{dead.pid}:1"
    alive_elsewhere = create(jobs, "other-host:7:7")
    gone = create(jobs, gone_here)
    stale = create(jobs, "other-host:8:8")
    mine = create(jobs, runner_name())
    old_done = create(jobs)
    jobs.fail(old_done, "boom")
    with store.transaction(write=True) as conn:
        conn.execute(
            tune_jobs.update().where(tune_jobs.c.id == stale).values(heartbeat_at=time.time() - 99)
        )
        conn.execute(
            tune_jobs.update()
            .where(tune_jobs.c.id == old_done)
            .values(finished_at="2000-01-01T00:00:00.000+00:00")
        )
    failed, forgotten = jobs.sweep(
        me=runner_name(), runner_is_gone=runner_is_gone, stale_s=30, forget_before="2001"
    )
    assert (failed, forgotten) == (2, 1)
    assert jobs.get(gone).state == "failed" and jobs.get(gone).error.startswith(INTERRUPTED)
    assert "heartbeat" in jobs.get(stale).error
    assert jobs.get(alive_elsewhere).state == "queued" and jobs.get(mine).state == "queued"
    assert [job.id for job in jobs.list(state="failed")] in ([gone, stale], [stale, gone])
    assert old_done not in {job.id for job in jobs.list()}


def test_runner_names_tell_a_live_process_from_a_dead_one():
    assert not runner_is_gone(runner_name())
    host, pid, start = runner_name().split(":")[-3:]
    assert runner_is_gone(f"{host}:{pid}:{int(start) + 1}")  # same pid, another process
    assert not runner_is_gone(f"elsewhere:{pid}:{start}")  # another host: its heartbeat says


def test_a_version_2_store_gains_the_jobs_table(tmp_path):
    path = tmp_path / "store.sqlite3"
    ThresholdStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE tune_jobs")
        db.execute("UPDATE schema_version SET version = 2")
    upgraded = ThresholdStore(path)
    try:
        assert upgraded.schema_version() == LATEST_VERSION == 3
        jobs = JobStore(upgraded)
        assert jobs.get(create(jobs)).state == "queued"
    finally:
        upgraded.close()
