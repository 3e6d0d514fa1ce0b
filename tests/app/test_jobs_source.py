"""`source=` jobs in process, through the dataset engine: partitions and passes move in the
progress, writes of it are throttled, a cancel stops the engine between partitions and
stores nothing, and options a dataset tune cannot honour are refused up front."""

from __future__ import annotations

import itertools
import time

import pytest

from labelcut.app import jobs as jobs_module
from labelcut.app.engine import dataset as engine_dataset
from labelcut.app.store.jobs import JobStore

from ..support.inprocess import app_client, wait_ready
from ..support.job_datasets import write_score_dataset


@pytest.fixture(scope="module")
def many_partitions(tmp_path_factory):
    """300 files of the yeast rows (275,100 rows): slow enough to watch and cancel."""
    root = tmp_path_factory.mktemp("roots")
    return root, write_score_dataset(root / "big", files=300, repeat=300)


@pytest.fixture
def client(tmp_path, many_partitions, monkeypatch):
    monkeypatch.delenv("LABELCUT_DATABASE_URL", raising=False)
    # One file per partition (the engine packs small files into ~32 MB partitions; a row
    # group is never split, so a limit of 1 row keeps each file whole and alone), so
    # the 300 files are 300 partitions to watch and cancel between.
    monkeypatch.setattr(engine_dataset, "default_partition_rows", lambda layout: 1)
    root, _ = many_partitions
    with app_client(tmp_path / "data", data_sources=[str(root)]) as c:
        wait_ready(c)
        yield c


def start(client, source, **form) -> str:
    answer = client.post(
        "/tune-thresholds", data={"source": str(source), "n_bootstrap": "0", **form}
    )
    assert answer.status_code == 202, answer.text
    return answer.headers["location"]


def test_progress_moves_through_partitions_and_its_writes_are_throttled(
    client, many_partitions, monkeypatch
):
    writes: list[float] = []
    real = JobStore.write_progress

    def counted(self, job_id, progress):
        writes.append(time.monotonic())
        return real(self, job_id, progress)

    monkeypatch.setattr(JobStore, "write_progress", counted)
    _, dataset = many_partitions
    location = start(client, dataset, estimate="false")
    seen = []
    while True:
        job = client.get(location).json()
        seen.append((job["progress"]["pass_index"], job["progress"]["partitions_done"]))
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert job["state"] == "succeeded", job
    assert job["progress"]["partitions"] == 300 and job["progress"]["rows"] == 275_100
    assert len(set(seen)) >= 3 and seen == sorted(seen), seen  # it moved, never back
    gaps = [b - a for a, b in itertools.pairwise(writes)]
    assert gaps and min(gaps) >= jobs_module.PROGRESS_EVERY_S * 0.95, gaps
    assert client.get(f"/thresholds/{job['threshold_set_id']}").status_code == 200


def test_cancel_stops_the_engine_between_partitions_and_stores_nothing(client, many_partitions):
    _, dataset = many_partitions
    location = start(client, dataset, estimate="false")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(location).json()
        if job["state"] == "running" and job["progress"]["partitions_done"] >= 1:
            break
        time.sleep(0.02)
    assert job["state"] == "running", job
    assert client.delete(location).status_code == 202
    while job["state"] == "running":
        time.sleep(0.05)
        job = client.get(location).json()
    assert job["state"] == "cancelled", job
    assert job["progress"]["partitions_done"] < 300 or job["progress"]["pass_index"] < 2
    assert client.get("/thresholds/history").json()["items"] == []


def test_options_a_dataset_tune_cannot_honour_are_422(client, many_partitions):
    _, dataset = many_partitions
    answer = client.post("/tune-thresholds", data={"source": str(dataset), "calibration": "platt"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == [
        "body",
        "calibration",
    ]
    assert client.get("/jobs").json() == {"items": []}


def test_with_a_dask_scheduler_source_jobs_run_on_its_cluster(tmp_path, monkeypatch):
    """LABELCUT_DASK_SCHEDULER: the job's partitions are reduced on that cluster's workers
    (an in-process LocalCluster here), with the thresholds of the local engine."""
    import distributed  # a dependency of labelcut: never skipped

    monkeypatch.delenv("LABELCUT_DATABASE_URL", raising=False)
    monkeypatch.setattr(engine_dataset, "default_partition_rows", lambda layout: 1)
    root = tmp_path / "roots"
    dataset = write_score_dataset(root / "yeast", files=3)
    form = {"n_bootstrap": "0", "estimate": "false", "activate": "false"}
    # TCP, not inproc: the job's own Client runs on a worker thread of the app.
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        settings = {"data_sources": [str(root)], "dask_scheduler": cluster.scheduler_address}
        with app_client(tmp_path / "data", **settings) as c:
            wait_ready(c)
            before = len(cluster.scheduler.task_prefixes)
            done = poll_done(c, start(c, dataset, **form))
            assert done["state"] == "succeeded", done
            assert len(cluster.scheduler.task_prefixes) > before  # its tasks ran there
        with app_client(tmp_path / "local", data_sources=[str(root)]) as c:
            wait_ready(c)
            local = poll_done(c, start(c, dataset, **form))
    assert done["result"]["thresholds"] == local["result"]["thresholds"]
    assert done["progress"]["partitions_done"] == done["progress"]["partitions"] == 3


def poll_done(client, location: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(location).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(job)


def test_a_dataset_of_features_is_scored_by_the_served_model(tmp_path, monkeypatch):
    """Feature columns (the bundle's names) are scored by the loaded model's bundle: the
    thresholds equal those of the yeast split uploaded with its inputs."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from labelcut.models import YEAST_TEST

    monkeypatch.delenv("LABELCUT_DATABASE_URL", raising=False)
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        X, Y, names, labels = z["X"], z["Y"], z["feature_names"], z["label_names"]
    root = tmp_path / "roots"
    (root / "features").mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(len(X)), 2)):
        columns = {str(f): X[rows, j] for j, f in enumerate(names)}
        columns |= {str(label): Y[rows, j] for j, label in enumerate(labels)}
        pq.write_table(pa.table(columns), root / "features" / f"part-{i}.parquet")
    # "shrunk": the default "adaptive" needs rows, so a source job runs it as "shrunk".
    form = {"n_bootstrap": "0", "estimate": "false", "activate": "false", "strategy": "shrunk"}
    with app_client(tmp_path / "data", data_sources=[str(root)]) as c:
        wait_ready(c)
        sync = c.post(
            "/tune-thresholds", files={"file": ("v.npz", YEAST_TEST.read_bytes())}, data=form
        ).json()
        done = poll_done(c, start(c, root / "features", **form))
    assert done["state"] == "succeeded", done
    assert done["result"]["thresholds"] == pytest.approx(sync["thresholds"], abs=1e-6)
    assert done["result"]["per_label"][0]["support"] == sync["per_label"][0]["support"]
