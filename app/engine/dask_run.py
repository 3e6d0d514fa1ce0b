"""The Dask engine: each pass mapped over the partitions on a `dask.distributed` cluster.

Without a scheduler address a `LocalCluster` starts on this machine (worker processes, one
thread each, so a worker holds one partition at a time; loopback only; every port, the
scheduler's HTTP one included, free and random; logs at CRITICAL only) and is closed on every way
out: the result, an error, a cancel, a KeyboardInterrupt. With one, the work runs on that
cluster (its workers need labelcut installed, and read access to the dataset) and only the
client is closed.

Per pass: the pass description is broadcast once, every partition is reduced to statistics
where it is read (`partition.reduce_partition`), a few partitions at a time, and the
statistics are merged pairwise on the cluster as they finish; the client receives the last
merge only, never rows.
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
#: Statistics (partitions reduced or being reduced, merges' inputs) alive at once on the
#: cluster, per worker thread: what bounds a worker's memory, whatever the partitions.
IN_FLIGHT_PER_THREAD = 2
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
    there pairwise as they finish, the last one fetched. Releases what is left on any way
    out, so nothing of the pass stays on the cluster."""
    [shared_pass] = client.scatter([pass_], broadcast=True, hash=False)
    threads = max(1, sum(client.nthreads().values()))
    merge = _StreamingMerge(
        client, tasks, shared_pass, tracker, tag=f"labelcut-{run_id}-pass{tracker.pass_index}"
    )
    try:
        with client.as_current():  # `wait` finds the client of this tune, not a default one
            return merge.run(limit=IN_FLIGHT_PER_THREAD * threads + 2)
    finally:
        # Released, the tasks no client wants are forgotten (queued ones dropped, running
        # ones discarded when done). Not `client.cancel`: cancelling a partition task also
        # cancels the merges that depend on it, and the scheduler's cancel asserts that a
        # client wants each of them (it breaks the client's stream).
        merge.release()
        shared_pass.release()


class _StreamingMerge:
    """Partitions are submitted a few at a time; two finished statistics (partitions or
    merges) are merged on the cluster as soon as both exist, a merge before any partition
    (priority). At most `limit` statistics exist at once, so a worker's memory is bounded
    by a partition and a few statistics whatever the number of partitions. Counts add
    exactly, so the order in which things finish does not change the result."""

    def __init__(
        self, client: Any, tasks: Sequence[PartitionTask], pass_: Any, tracker: Tracker, *, tag: str
    ) -> None:
        self.client, self.pass_, self.tracker, self.tag = client, pass_, tracker, tag
        self.queue = list(reversed(tasks))  # popped from the end: partition order
        self.reducing: dict[Any, int] = {}  # partition future -> its rows
        self.merging: dict[Any, tuple[Any, Any]] = {}  # merge future -> its two inputs
        self.finished: list[Any] = []  # statistics futures waiting for a partner
        self.merges = 0

    def run(self, *, limit: int) -> Any:
        from distributed import wait

        while True:
            self.tracker.check_cancel()
            self._submit(limit)
            busy = [*self.reducing, *self.merging]
            if not busy:
                break
            with contextlib.suppress(TimeoutError):
                wait(busy, timeout=POLL_S, return_when="FIRST_COMPLETED")
            self._collect()
            while len(self.finished) >= 2:
                self._merge(self.finished.pop(0), self.finished.pop(0))
        [last] = self.finished
        return last.result()

    def release(self) -> None:
        inputs = [future for pair in self.merging.values() for future in pair]
        for future in (*self.reducing, *self.merging, *inputs, *self.finished):
            future.release()
        self.reducing, self.merging, self.finished = {}, {}, []

    def _submit(self, limit: int) -> None:
        held = len(self.reducing) + 3 * len(self.merging) + len(self.finished)
        while self.queue and held < limit:
            task = self.queue.pop()
            future = self.client.submit(
                reduce_partition,
                task,
                pass_=self.pass_,
                key=f"{self.tag}-partition-{task.partition.index}",
                pure=False,
            )
            self.reducing[future] = task.partition.rows
            held += 1

    def _collect(self) -> None:
        """Move what finished to `finished` (reporting partitions); raise a task's error (a
        worker's DatasetError comes back as itself)."""
        for future in [f for f in self.reducing if f.status != "pending"]:
            _raise_failed(future)
            self.tracker.partition_done(self.reducing.pop(future))
            self.finished.append(future)
        for future in [f for f in self.merging if f.status != "pending"]:
            _raise_failed(future)
            # Released explicitly, not left to garbage collection: a future kept alive by a
            # reference cycle (a suppressed timeout's traceback) keeps its statistics on a
            # worker until the pass ends.
            for done in self.merging.pop(future):
                done.release()
            self.finished.append(future)

    def _merge(self, first: Any, second: Any) -> None:
        self.merges += 1
        merged = self.client.submit(
            merge_group, first, second, key=f"{self.tag}-merge-{self.merges}", priority=1
        )
        self.merging[merged] = (first, second)


def _raise_failed(future: Any) -> None:
    if future.status in ("error", "cancelled"):
        future.result()  # raises the worker's exception
        raise RuntimeError(f"task {future.key} was cancelled")
