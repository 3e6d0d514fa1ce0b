"""`tune_dataset` end to end on real Parquet datasets: on a real LocalCluster (one shared by
the module, and the embedded one the engine starts and closes) and in-process, against
`tune_thresholds` on the same rows; progress, cancel, and errors from the workers."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

from labelcut import tuning
from labelcut.app.engine import (
    Cancelled,
    DatasetError,
    Progress,
    dask_run,
    open_dataset,
    read_model_spec,
    tune_dataset,
)
from labelcut.app.engine.partition import PartitionTask, partition_scores
from labelcut.models import DEFAULT_MODEL_DIR, YEAST_TEST, load_model

from ..support.parquet_sets import columns_table, random_cuts, write_dataset

LABELS = ["alpha", "beta", "gamma", "delta", "rare"]
PER_LABEL = {"strategy": "per_label", "n_bootstrap": 0}
# Fields of a label's row that statistics reproduce exactly (the cross-fitted estimate is
# not computed from statistics, and intervals come from counts: see tuning.stats).
EXACT_FIELDS = ("label", "threshold", "precision", "recall", "f1", "support", "status")


def _rows(n: int = 2400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, len(LABELS))) < [0.5, 0.3, 0.2, 0.1, 0.01]).astype(np.uint8)
    noise = rng.normal(0.0, 1.0, targets.shape)
    scores = 1.0 / (1.0 + np.exp(-(2.0 * targets - 1.0 + noise)))
    scores = scores.astype(np.float32)
    scores[: n // 10] = np.round(scores[: n // 10], 2)  # ties across partitions
    return scores, targets


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    return _rows()


@pytest.fixture(scope="module")
def score_set(tmp_path_factory, rows) -> str:
    scores, targets = rows
    folder = tmp_path_factory.mktemp("scores") / "set"
    rng = np.random.default_rng(7)
    table = columns_table(targets, LABELS, scores=scores)
    write_dataset(folder, table, cuts=random_cuts(rng, len(scores), 6), row_group_rows=250)
    return str(folder)


@pytest.fixture(scope="module")
def scheduler():
    """One real LocalCluster (2 worker processes) for the module: starting one costs seconds."""
    from distributed import Client

    cluster = dask_run.local_cluster(2)
    try:
        yield cluster.scheduler_address
    finally:
        # Every test left the scheduler empty: nothing of a tune stays on the cluster.
        with Client(cluster, set_as_default=False) as client:
            for _ in range(50):  # releases reach the scheduler asynchronously
                left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
                if left == 0:
                    break
                time.sleep(0.1)
        cluster.close()
        assert left == 0


def _same_labels(got, expected) -> None:
    got_rows = got.to_dict(label_names=LABELS)["per_label"]
    expected_rows = expected.to_dict(label_names=LABELS)["per_label"]
    for a, b in zip(got_rows, expected_rows, strict=True):
        assert {k: a[k] for k in EXACT_FIELDS} == {k: b[k] for k in EXACT_FIELDS}


def _spawned() -> list[psutil.Process]:
    """This process's live worker processes (the multiprocessing resource tracker aside)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.is_running() and "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


# "defaults" but the strategy: the default "adaptive" needs the rows' folds, so statistics
# run it as "shrunk" (tested in tests/tuning/test_stats_tuning.py); compare like with like.
SHRUNK_DEFAULTS = {"strategy": "shrunk"}


@pytest.mark.parametrize("kwargs", [PER_LABEL, SHRUNK_DEFAULTS], ids=["per_label", "defaults"])
def test_dask_thresholds_equal_tune_thresholds(score_set, scheduler, rows, kwargs):
    scores, targets = rows
    expected = tuning.tune_thresholds(scores, targets, label_names=LABELS, **kwargs)
    got = tune_dataset(score_set, scheduler=scheduler, tune_kwargs=kwargs, partition_rows=500)
    np.testing.assert_array_equal(np.asarray(got.thresholds), np.asarray(expected.thresholds))
    _same_labels(got, expected)


def test_random_partitionings_give_the_same_result(tmp_path, rows):
    scores, targets = rows
    rng = np.random.default_rng(11)
    table = columns_table(targets, LABELS, scores=scores)
    expected = tuning.tune_thresholds(scores, targets, label_names=LABELS, **SHRUNK_DEFAULTS)
    results = []
    for trial in range(3):
        folder = tmp_path / f"layout{trial}"
        n_files = int(rng.integers(2, 9))
        write_dataset(
            folder,
            table,
            cuts=random_cuts(rng, len(scores), n_files),
            row_group_rows=int(rng.integers(50, 700)),
        )
        partition_rows = int(rng.integers(100, 1500))
        assert len(open_dataset(str(folder), partition_rows=partition_rows).partitions) > 2
        result = tune_dataset(
            str(folder),
            engine="local",
            partition_rows=partition_rows,
            tune_kwargs=SHRUNK_DEFAULTS,
        )
        results.append(result.to_dict(label_names=LABELS))
        np.testing.assert_array_equal(result.thresholds, expected.thresholds)
        _same_labels(result, expected)
    # Intervals and all: merged counts are the same whatever the split.
    assert results[0] == results[1] == results[2]


def test_features_are_scored_on_the_workers_by_the_bundled_model(tmp_path, scheduler):
    model = load_model(DEFAULT_MODEL_DIR, device="cpu")
    with np.load(YEAST_TEST) as z:
        features, targets = z["X"], z["Y"]
    labels = list(model.labels)
    table = columns_table(targets, labels, features=features, feature_names=model.feature_names)
    write_dataset(tmp_path / "set", table, cuts=[300, 600])
    got = tune_dataset(
        str(tmp_path / "set"),
        scheduler=scheduler,
        model_dir=str(DEFAULT_MODEL_DIR),
        tune_kwargs=PER_LABEL,
    )
    # The workers score each partition as one batch of rows: the reference scores the same
    # batches (a batch's float rounding can differ by an ulp from another batching's).
    dataset = open_dataset(str(tmp_path / "set"), model=read_model_spec(DEFAULT_MODEL_DIR))
    parts = [
        partition_scores(
            PartitionTask(dataset.fs, p, dataset.layout, str(DEFAULT_MODEL_DIR), "cpu")
        )
        for p in dataset.partitions
    ]
    scores = np.concatenate([s for s, _ in parts])
    np.testing.assert_allclose(scores, model.predict_proba(features), atol=1e-6)
    expected = tuning.tune_thresholds(scores, targets, label_names=labels, **PER_LABEL)
    np.testing.assert_array_equal(got.thresholds, expected.thresholds)
    assert got.n_samples == len(targets)


def test_the_local_engine_reports_every_partition_of_every_pass(score_set, rows):
    seen: list[Progress] = []
    dataset = open_dataset(score_set, partition_rows=400)
    result = tune_dataset(
        score_set, engine="local", tune_kwargs=PER_LABEL, partition_rows=400, progress=seen.append
    )
    _check_progress(seen, partitions=len(dataset.partitions), rows=len(rows[0]))
    expected = tuning.tune_thresholds(*rows, label_names=LABELS, **PER_LABEL)
    np.testing.assert_array_equal(result.thresholds, expected.thresholds)


def test_the_dask_engine_reports_every_partition_of_every_pass(score_set, scheduler, rows):
    seen: list[Progress] = []
    dataset = open_dataset(score_set, partition_rows=400)
    tune_dataset(
        score_set, scheduler=scheduler, tune_kwargs=PER_LABEL, partition_rows=400,
        progress=seen.append,
    )  # fmt: skip
    _check_progress(seen, partitions=len(dataset.partitions), rows=len(rows[0]))


def _check_progress(seen: list[Progress], *, partitions: int, rows: int) -> None:
    passes = max(p.pass_index for p in seen)
    assert passes >= 1
    assert len(seen) == passes * (partitions + 1)  # a start of pass, then each partition
    for index in range(1, passes + 1):
        this_pass = [p for p in seen if p.pass_index == index]
        assert [p.partitions_done for p in this_pass] == list(range(partitions + 1))
        assert this_pass[-1].rows_done == rows
        assert all(p.partitions == partitions and p.rows == rows for p in this_pass)
        assert all(p.passes >= index for p in this_pass)
    # The planned passes are re-read each pass: an upper bound that only tightens (float32
    # scores: 17 before the grid pass, about 5 after it).
    bounds = [p.passes for p in seen]
    assert bounds == sorted(bounds, reverse=True)
    if passes > 1:
        assert bounds[-1] < bounds[0]
    elapsed = [p.elapsed_s for p in seen]
    assert elapsed == sorted(elapsed)


def test_cancel_stops_the_local_engine_between_partitions(score_set):
    cancel = threading.Event()
    seen: list[Progress] = []

    def progress(report: Progress) -> None:
        seen.append(report)
        if report.partitions_done == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        tune_dataset(
            score_set, engine="local", partition_rows=300, progress=progress, cancel=cancel
        )
    assert seen[-1].partitions_done == 3 and seen[-1].pass_index == 1


def test_cancel_stops_the_dask_engine_and_leaves_nothing_on_the_cluster(score_set, scheduler):
    cancel = threading.Event()
    seen: list[Progress] = []

    def progress(report: Progress) -> None:
        seen.append(report)
        if report.partitions_done >= 1:
            cancel.set()

    with pytest.raises(Cancelled):
        tune_dataset(
            score_set, scheduler=scheduler, partition_rows=100, progress=progress, cancel=cancel
        )
    assert seen[-1].pass_index == 1 and seen[-1].partitions_done < seen[-1].partitions
    # (the module fixture checks that the scheduler holds no task of it afterwards)


def test_a_cancel_set_before_the_start_does_no_work(score_set):
    cancel = threading.Event()
    cancel.set()
    seen: list[Progress] = []
    with pytest.raises(Cancelled):
        tune_dataset(score_set, engine="dask", cancel=cancel, progress=seen.append)
    assert seen == []


def test_a_bad_value_on_a_worker_comes_back_as_a_dataset_error(tmp_path, scheduler, rows):
    scores, targets = rows
    scores = scores.copy()
    scores[1700, 2] = np.nan
    write_dataset(
        tmp_path / "set", columns_table(targets, LABELS, scores=scores), cuts=[1000, 1500]
    )
    with pytest.raises(DatasetError, match=r"'score:gamma'.*row 201 of file '.*part-002\.parquet'"):
        tune_dataset(str(tmp_path / "set"), scheduler=scheduler, partition_rows=100)


def test_bad_options_fail_before_any_cluster_starts(score_set, monkeypatch):
    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(dask_run, "local_cluster", no_cluster)
    with pytest.raises(ValueError, match="strategy"):
        tune_dataset(score_set, tune_kwargs={"strategy": "nope"})
    with pytest.raises(ValueError, match="engine"):
        tune_dataset(score_set, engine="spark")


def test_quantised_mode_runs_one_pass_close_to_exact(score_set, scheduler, rows):
    seen: list[Progress] = []
    got = tune_dataset(
        score_set, scheduler=scheduler, mode="quantised", tune_kwargs=PER_LABEL,
        progress=seen.append,
    )  # fmt: skip
    assert max(p.pass_index for p in seen) == 1
    expected = tuning.tune_thresholds(*rows, label_names=LABELS, **PER_LABEL)
    got_f1 = [row["f1"] for row in got.to_dict(label_names=LABELS)["per_label"]]
    exact_f1 = [row["f1"] for row in expected.to_dict(label_names=LABELS)["per_label"]]
    np.testing.assert_allclose(got_f1, exact_f1, atol=0.01)


# --- the embedded LocalCluster: started and closed by the engine ---------------------------


def test_the_embedded_cluster_tunes_and_is_closed_on_return(score_set, rows):
    before = _spawned()
    got = tune_dataset(score_set, tune_kwargs=PER_LABEL, partition_rows=600)
    expected = tuning.tune_thresholds(*rows, label_names=LABELS, **PER_LABEL)
    np.testing.assert_array_equal(got.thresholds, expected.thresholds)
    assert _no_workers_left(before)


def test_the_embedded_cluster_is_closed_on_an_error_and_on_keyboard_interrupt(tmp_path, rows):
    before = _spawned()
    scores, targets = rows
    table = columns_table(targets, LABELS, scores=scores)
    write_dataset(tmp_path / "good", table, cuts=[1200])
    bad = table.set_column(0, "alpha", pq.read_table(_bad_labels(tmp_path, table)).column(0))
    write_dataset(tmp_path / "bad", bad, cuts=[1200])
    with pytest.raises(DatasetError, match="Label column 'alpha'"):
        tune_dataset(str(tmp_path / "bad"))
    assert _no_workers_left(before)

    def interrupt(report: Progress) -> None:
        if report.partitions_done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune_dataset(str(tmp_path / "good"), partition_rows=300, progress=interrupt)
    assert _no_workers_left(before)


def _bad_labels(tmp_path, table):
    import pyarrow as pa

    values = table.column("alpha").to_numpy().astype(np.int64)
    values[5] = 3
    path = tmp_path / "alpha.parquet"
    pq.write_table(pa.table({"alpha": values}), path)
    return path


def _no_workers_left(before: list[psutil.Process], timeout_s: float = 10.0) -> bool:
    """No worker process but those of `before` (the module's cluster) is alive: the
    engine's own have exited (they may take a moment to be reaped)."""
    known = {p.pid for p in before}
    new = [p for p in _spawned() if p.pid not in known]
    _, alive = psutil.wait_procs(new, timeout=timeout_s)
    return not alive


def test_an_unreachable_scheduler_is_a_connection_error(score_set, monkeypatch):
    monkeypatch.setattr(dask_run, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(
        ConnectionError, match=r"Cannot reach the Dask scheduler 'tcp://127\.0\.0\.1:1'"
    ):
        tune_dataset(score_set, scheduler="tcp://127.0.0.1:1")
