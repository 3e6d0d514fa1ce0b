"""The Dask engine: each pass mapped over the partitions on a `dask.distributed` cluster.

Without a scheduler address a `LocalCluster` starts on this machine (worker processes, one
thread each, so a worker holds one partition at a time; loopback only; every port, the
scheduler's HTTP one included, free and random; logs at CRITICAL only) and is closed on every way
out: the result, an error, a cancel, a KeyboardInterrupt. With one, the work runs on that
cluster (its workers need labelcut installed, and read access to the dataset) and only the
client is closed.

Per pass: the pass description is broadcast once, every partition is reduced to statistics
where it is read (`partition.reduce_partition`), and the statistics are merged in a tree of
`MERGE_FANOUT`-way merges on the cluster; the client receives the root only, never rows.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from labelcut.app.engine.partition import PartitionTask, merge_group, reduce_partition
from labelcut.app.engine.progress import Tracker

#: Workers of the embedded LocalCluster.
DEFAULT_WORKERS = 2
#: Statistics merged per node of the merge tree.
MERGE_FANOUT = 2
#: How often the client looks at the partitions' futures (and at the cancel event), seconds.
POLL_S = 0.1
#: How long to wait for a scheduler given by address, seconds.
CONNECT_TIMEOUT_S = 30


def local_cluster(n_workers: int = DEFAULT_WORKERS) -> Any:  # -> distributed.LocalCluster
    """The embedded cluster: `n_workers` processes of one thread, on loopback, quiet."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        # The scheduler serves HTTP (health, metrics) even without a dashboard, by default on
        # 8787: a free port instead, so two tunes (or a user's own cluster) never collide.
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address=None,
        # CRITICAL: a bad value is a DatasetError the client raises, not a worker log line.
        silence_logs=logging.CRITICAL,
    )


@contextlib.contextmanager
def dask_client(scheduler: str | None, n_workers: int = DEFAULT_WORKERS) -> Iterator[Any]:
    """A `distributed.Client` on `scheduler`, or on a fresh LocalCluster closed on exit."""
    from distributed import Client

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except OSError as exc:
            raise ConnectionError(f"Cannot reach the Dask scheduler '{scheduler}': {exc}") from None
        with contextlib.closing(client):
            yield client
        return
    cluster = local_cluster(n_workers)
    try:
        with Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()


def run_dask(
    plan: Any,
    tasks: Sequence[PartitionTask],
    tracker: Tracker,
    *,
    scheduler: str | None = None,
    n_workers: int = DEFAULT_WORKERS,
) -> None:
    """Drive `plan` (a `StatsTuning`) to its end, each pass on the cluster."""
    with dask_client(scheduler, n_workers) as client:
        run_id = uuid.uuid4().hex[:12]
        while (pass_ := plan.next_pass()) is not None:
            tracker.start_pass()
            plan.feed(reduce_on_cluster(client, tasks, pass_, tracker, run_id=run_id))


def reduce_on_cluster(
    client: Any, tasks: Sequence[PartitionTask], pass_: Any, tracker: Tracker, *, run_id: str
) -> Any:
    """The merged statistics of every partition for `pass_`: reduced on the workers, merged
    in a tree there, the root fetched. Releases what is left on any exception."""
    tag = f"labelcut-{run_id}-pass{tracker.pass_index}"
    [shared_pass] = client.scatter([pass_], broadcast=True, hash=False)
    pending = client.map(
        reduce_partition,
        list(tasks),
        pass_=shared_pass,
        key=[f"{tag}-partition-{task.partition.index}" for task in tasks],
        pure=False,
    )
    rows = {leaf.key: task.partition.rows for leaf, task in zip(pending, tasks, strict=True)}
    root = _merge_tree(client, pending, tag)
    try:
        with client.as_current():  # `wait` finds the client of this tune, not a default one
            _follow(pending, rows, tracker)
        return root.result()
    finally:
        # Done or not, nothing of this pass stays on the cluster: released, the tasks no
        # client wants are forgotten (queued ones dropped, running ones discarded when
        # done). Not `client.cancel`: cancelling a partition task also cancels the merges
        # that depend on it, which this client no longer holds, and the scheduler's cancel
        # asserts that some client wants each of them (it breaks the client's stream).
        for future in (root, *pending, shared_pass):
            future.release()


def _merge_tree(client: Any, leaves: Sequence[Any], tag: str) -> Any:
    """The root future of a tree of MERGE_FANOUT-way merges over `leaves`.

    Only the root is kept here: the cluster keeps an intermediate result while a merge
    still needs it and frees it right after, so a worker holds the statistics of at most
    about MERGE_FANOUT partitions per tree level. A merge outranks every partition task
    (priority: higher runs first), so a group is merged as soon as it is ready instead of
    after every partition is reduced."""
    level = list(leaves)
    depth = 0
    while len(level) > 1:
        depth += 1
        level = [
            client.submit(
                merge_group,
                *level[i : i + MERGE_FANOUT],
                key=f"{tag}-merge{depth}-{i}",
                priority=depth,
            )
            for i in range(0, len(level), MERGE_FANOUT)
        ]
    return level[0]


def _follow(pending: list[Any], rows: dict[str, int], tracker: Tracker) -> None:
    """Report each partition as it finishes; raise its error (a worker's DatasetError comes
    back as itself) or `Cancelled` as soon as either happens.

    Finished partitions leave `pending` (in place): the client then holds no reference to
    their statistics, and the cluster frees them once merged."""
    from distributed import wait

    while pending:
        tracker.check_cancel()
        with contextlib.suppress(TimeoutError):
            wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
        still = []
        for leaf in pending:
            if leaf.status == "finished":
                tracker.partition_done(rows[leaf.key])
            elif leaf.status in ("error", "cancelled"):
                leaf.result()  # raises the worker's exception
                raise RuntimeError(f"partition task {leaf.key} was cancelled")
            else:
                still.append(leaf)
        pending[:] = still
