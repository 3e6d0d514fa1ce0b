"""Tune jobs: a tune of a large upload, or of a dataset named by `source=`, runs beside the
requests and is followed through `/jobs/{id}` (issue 17).

One `JobRunner` per app (`app.state.jobs`, started by `with_jobs` around the app's
lifespan). Each job is an asyncio task on the event loop that waits for its share of the
tunes' memory budget (`app/budget.py`; upload jobs: `tune_cost` of their decoded size
and labels, queued until it fits) and then runs its work on the runner's own thread pool
(`labelcut-job`), never on the request pools, so `/healthz` and `/predict` stay fast.

The store is the record (`app/store/jobs.py`): progress is written from the worker at most
every `PROGRESS_EVERY_S`, a keeper thread refreshes the heartbeat of this process's live
jobs and picks up cancels requested on other replicas, and, once the store is open and then
every `SWEEP_EVERY_S`, fails jobs whose process died ("interrupted by a restart") and
forgets finished ones older than `LABELCUT_JOB_RETENTION_H`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from labelcut import tuning
from labelcut.app.budget import BudgetBusy, tune_cost
from labelcut.app.service import (
    RESULT_KEYS,
    Service,
    TunedSet,
    TuneParams,
    label_curves,
    sha256_of_file,
    tune_data,
)
from labelcut.app.store import StoreUnavailable, ThresholdSet
from labelcut.app.store.jobs import JobCancelled, JobRecord, JobStore
from labelcut.app.tune_form import tune_keywords
from labelcut.app.uploads import UploadError, read_validation_file

log = logging.getLogger("labelcut")

PROGRESS_EVERY_S = 0.5  # the most often a job's progress is written to the store
HEARTBEAT_EVERY_S = 2.0
SWEEP_EVERY_S = 10.0
# A queued upload job waits this long for its share of the memory budget before failing.
BUDGET_WAIT_S = 7 * 24 * 3600.0
SHUTDOWN = "interrupted by a restart: the server shut down before it finished."


class JobsFull(Exception):
    """This process already holds LABELCUT_MAX_JOBS live jobs (503)."""


class JobFailed(Exception):
    """The job cannot finish; its message is the job's `error`."""


def _process_start_ticks(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def runner_name() -> str:
    """This process, as jobs record it: `host:pid:start`, so a later process with the same
    pid is never taken for it."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start_ticks(pid) or int(time.time())}"


def runner_is_gone(runner: str) -> bool:
    """True when `runner` was a process on this host that no longer runs. A process on
    another host is never judged here (its heartbeat is: `LABELCUT_JOB_STALE_S`)."""
    host, _, rest = runner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return _process_start_ticks(int(pid_text)) != start


def empty_progress() -> dict[str, Any]:
    return {
        "pass_index": 0,
        "passes": 1,
        "partitions_done": 0,
        "partitions": None,
        "rows_done": 0,
        "rows": None,
        "elapsed_s": 0.0,
    }


class Progress:
    """A running job's progress, written to the store at most every PROGRESS_EVERY_S.

    Every write also reads back whether a cancel was requested (on any replica); `check()`
    raises JobCancelled once one was."""

    def __init__(self, jobs: JobStore, job_id: str, cancel: threading.Event) -> None:
        self.jobs, self.job_id, self.cancel = jobs, job_id, cancel
        self.values = empty_progress()
        self._started = time.monotonic()
        self._written = 0.0
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self.values["elapsed_s"] = round(time.monotonic() - self._started, 3)
            return dict(self.values)

    def update(self, **values: Any) -> None:
        with self._lock:
            self.values.update(values)
        self.flush()

    def add_rows(self, rows: int) -> None:
        with self._lock:
            self.values["rows_done"] = int(self.values["rows_done"] or 0) + rows
        self.flush()
        self.check()

    def flush(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < PROGRESS_EVERY_S:
            return
        self._written = now
        try:
            if self.jobs.write_progress(self.job_id, self.snapshot()):
                self.cancel.set()
        except StoreUnavailable as exc:  # progress is best effort; the outcome is not
            log.warning("Job %s: progress not recorded: %s", self.job_id, exc)

    def check(self) -> None:
        if self.cancel.is_set():
            raise JobCancelled(self.job_id)


@dataclass
class LiveJob:
    """A job this process runs: its cancel flag and its task on the event loop."""

    id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None
    running: bool = False  # on a worker thread (else still waiting for memory or a thread)
    spool: Path | None = None


Work = Callable[[Progress], None]


class JobRunner:
    """The jobs of one app: submit, cancel, and the keeper thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.settings = app.state.settings
        self.name = runner_name()
        self._pool = ThreadPoolExecutor(
            self.settings.job_workers, thread_name_prefix="labelcut-job"
        )
        self._live: dict[str, LiveJob] = {}
        self._stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep, name="labelcut-job-keeper", daemon=True)
        self._jobs: JobStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def service(self) -> Service:
        return self.app.state.service

    @property
    def spool_dir(self) -> Path:
        return Path(self.settings.data_dir) / "jobs"

    def jobs(self) -> JobStore:
        store = self.service.require_store()
        if self._jobs is None or self._jobs.store is not store:
            self._jobs = JobStore(store)
        return self._jobs

    # --- submitting ---------------------------------------------------------------------

    def _reserve_slot(self) -> None:
        if len(self._live) >= self.settings.max_jobs:
            raise JobsFull(
                f"This server already runs or queues {len(self._live)} jobs "
                "(LABELCUT_MAX_JOBS); retry when one has finished."
            )

    async def spool_upload(self, job_id: str, fileobj: IO[bytes], suffix: str) -> Path:
        """Copy an upload out of the request (which closes it when it ends) for its job."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self.spool_dir / f"{job_id}.{suffix}"

        def copy() -> None:
            fileobj.seek(0)
            with path.open("wb") as out:
                shutil.copyfileobj(fileobj, out, 1 << 20)

        await asyncio.to_thread(copy)
        return path

    async def submit(
        self,
        *,
        job_id: str,
        kind: str,
        source: str | None,
        request: dict[str, Any],
        budget_bytes: int,
        work: Work,
        spool: Path | None = None,
    ) -> JobRecord:
        """Record a queued job and start its task; `work(progress)` runs on the job pool
        once `budget_bytes` of the tunes' memory budget are held, and records the outcome."""
        try:
            self._reserve_slot()
            service = self.service
            model = service.loaded_model
            jobs = self.jobs()
            record = await asyncio.to_thread(
                jobs.create,
                job_id=job_id,
                kind=kind,
                model_name=model.name,
                model_key=service.model_key,
                source=source,
                request=request,
                progress=empty_progress(),
                runner=self.name,
            )
        except BaseException:
            if spool is not None:
                spool.unlink(missing_ok=True)
            raise
        self._loop = asyncio.get_running_loop()
        live = LiveJob(job_id, spool=spool)
        self._live[job_id] = live
        live.task = asyncio.create_task(self._drive(live, budget_bytes, work, jobs))
        log.info("Job %s (%s) queued", job_id, kind)
        return record

    async def _drive(self, live: LiveJob, budget_bytes: int, work: Work, jobs: JobStore) -> None:
        budget = self.app.state.tune_runner.budget
        try:
            async with budget.reserve(budget_bytes, BUDGET_WAIT_S):
                loop = asyncio.get_running_loop()
                future = loop.run_in_executor(self._pool, self._execute, live, work, jobs)
                try:
                    await asyncio.shield(future)
                except asyncio.CancelledError:
                    # A cancel while it waits for a thread, or shutting down. The flag stops
                    # the thread at its next check (or before it starts: then it is dropped
                    # at once); one already running keeps the budget until it really ends,
                    # as TuneRunner does.
                    live.cancel.set()
                    if live.running or not future.cancel():
                        with contextlib.suppress(BaseException):
                            await future
                    raise
        except asyncio.CancelledError:
            if not live.running:  # cancelled while waiting for memory: nothing ran
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(jobs.mark_cancelled, live.id)
        except BudgetBusy as exc:
            await asyncio.to_thread(jobs.fail, live.id, str(exc))
        except Exception:
            log.exception("Job %s: its task failed", live.id)
        finally:
            self._live.pop(live.id, None)
            if live.spool is not None:
                live.spool.unlink(missing_ok=True)

    def _execute(self, live: LiveJob, work: Work, jobs: JobStore) -> None:
        """On a job thread: queued -> running, the work, and the outcome recorded."""
        if live.cancel.is_set() or not jobs.start(live.id):
            return  # cancelled while queued
        live.running = True
        progress = Progress(jobs, live.id, live.cancel)
        try:
            self._test_only_delay(progress)
            work(progress)
            log.info("Job %s succeeded", live.id)
        except JobCancelled:
            jobs.mark_cancelled(live.id, progress.snapshot())
            log.info("Job %s cancelled", live.id)
        except (JobFailed, UploadError, ValueError) as exc:
            jobs.fail(live.id, str(exc), progress.snapshot())
            log.info("Job %s failed: %s", live.id, exc)
        except StoreUnavailable as exc:
            log.error("Job %s: the store went away: %s", live.id, exc)
            with contextlib.suppress(StoreUnavailable):
                jobs.fail(live.id, str(exc), progress.snapshot())
        except Exception as exc:
            log.exception("Job %s failed", live.id)
            jobs.fail(live.id, f"{type(exc).__name__}: {exc}", progress.snapshot())

    def _test_only_delay(self, progress: Progress) -> None:
        """LABELCUT_TEST_ONLY_JOB_DELAY_S: a slow job for tests of progress and cancel."""
        delay = self.settings.test_only_job_delay_s
        end = time.monotonic() + delay
        while time.monotonic() < end:
            progress.flush()
            progress.check()
            time.sleep(0.02)

    # --- cancelling ---------------------------------------------------------------------

    def cancel_local(self, job_id: str) -> None:
        """After a cancel is recorded: stop the job here if this process runs it."""
        live = self._live.get(job_id)
        if live is None:
            return
        live.cancel.set()
        if not live.running and live.task is not None and self._loop is not None:
            # Still waiting for memory: end its task (on the loop: tasks are not thread-safe).
            self._loop.call_soon_threadsafe(live.task.cancel)

    # --- the keeper ---------------------------------------------------------------------

    def start(self) -> None:
        self._keeper.start()

    def _keep(self) -> None:
        service = self.service
        while not service.ready.is_set():
            if self._stop.wait(0.2):
                return
        last_sweep = 0.0
        while not self._stop.is_set():
            try:
                jobs = self.jobs()
                if self._live:
                    for job_id in jobs.heartbeat(self.name):
                        self._flag(job_id)
                if time.monotonic() - last_sweep >= SWEEP_EVERY_S:
                    last_sweep = time.monotonic()
                    self.sweep(jobs)
            except StoreUnavailable as exc:
                log.warning("Jobs: the store is unreachable: %s", exc)
            except Exception:
                log.exception("Jobs: the keeper failed once")
            self._stop.wait(HEARTBEAT_EVERY_S)

    def _flag(self, job_id: str) -> None:
        live = self._live.get(job_id)
        if live is not None:
            live.cancel.set()

    def sweep(self, jobs: JobStore) -> None:
        forget = datetime.now(UTC) - timedelta(hours=self.settings.job_retention_h)
        failed, forgotten = jobs.sweep(
            me=self.name,
            runner_is_gone=runner_is_gone,
            stale_s=self.settings.job_stale_s,
            forget_before=forget.isoformat(timespec="milliseconds"),
        )
        if failed:
            log.warning("Marked %d job(s) failed: interrupted by a restart", failed)
        if forgotten:
            log.info("Forgot %d finished job(s) older than the retention", forgotten)
        self._clean_spool()

    def _clean_spool(self) -> None:
        """Uploads left by a process that died with their jobs."""
        if not self.spool_dir.is_dir():
            return
        for path in self.spool_dir.iterdir():
            if path.stem not in self._live and time.time() - path.stat().st_mtime > 60:
                path.unlink(missing_ok=True)

    async def close(self) -> None:
        """Shutting down: live jobs are told to stop and recorded failed (a restart)."""
        self._stop.set()
        live = list(self._live.values())
        # Recorded failed before the jobs are told to stop: a job thread that saw its flag
        # first would record itself "cancelled" (a user's DELETE), and its conditional
        # update could land before this one.
        if live and self.service.store is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.jobs().fail_mine, self.name, SHUTDOWN)
        for job in live:
            job.cancel.set()
        for job in live:
            if job.task is not None:
                job.task.cancel()
        tasks = [job.task for job in live if job.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._keeper.is_alive():
            await asyncio.to_thread(self._keeper.join, 5)


def with_jobs(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`inner` (the app's lifespan) with the job runner started inside it and closed
    before it ends (so the store is still open while jobs are recorded as stopped)."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with inner(app):
            runner = JobRunner(app)
            app.state.jobs = runner
            runner.start()
            try:
                yield
            finally:
                await runner.close()

    return lifespan


# --- the work of a job ----------------------------------------------------------------------


def store_tuned(
    service: Service,
    tuned: TunedSet,
    params: TuneParams,
    *,
    data_sha256: str,
    n_samples: int,
    activate: bool,
    progress: Progress,
) -> ThresholdSet:
    """Store a job's set as `Service.tune` stores a synchronous tune's, and mark the job
    succeeded in the same transaction (JobCancelled: a cancel came first, nothing stored)."""
    within = progress.jobs.finish_within(progress.job_id, progress.snapshot())
    stored = service.store_tuned(
        tuned,
        params,
        data_sha256=data_sha256,
        n_samples=n_samples,
        activate=activate,
        within=within,
    )
    log.info("Job %s stored threshold set %d", progress.job_id, stored.id)
    return stored


def finish(
    service: Service,
    progress: Progress,
    tuned: TunedSet,
    params: TuneParams,
    labels: list[str],
    report_keys: tuple[str, ...],
    *,
    store: bool,
    activate: bool,
    data_sha256: str,
    n_samples: int,
) -> None:
    """A job's last step: store its set (succeeding in the same transaction), or with
    `store=false` succeed with the report that stored nothing. JobCancelled: a cancel came
    first, and nothing was stored."""
    if store:
        store_tuned(
            service,
            tuned,
            params,
            data_sha256=data_sha256,
            n_samples=n_samples,
            activate=activate,
            progress=progress,
        )
        return
    body = unstored_report(labels, tuned, report_keys)
    if not progress.jobs.succeed(progress.job_id, result=body, progress=progress.snapshot()):
        raise JobCancelled(progress.job_id)


def unstored_report(labels: list[str], tuned: TunedSet, keys: tuple[str, ...]) -> dict[str, Any]:
    """The body `/tune-thresholds` answers for `store=false` (`keys`: its report keys)."""
    return {
        "stored": False,
        "threshold_set": None,
        "thresholds": dict(zip(labels, tuned.thresholds, strict=True)),
        **{key: tuned.result.get(key) for key in keys},
    }


def upload_work(
    service: Service,
    path: Path,
    fmt: str,
    params: TuneParams,
    *,
    activate: bool,
    store: bool,
    max_data_bytes: int,
    report_keys: tuple[str, ...],
) -> Work:
    """A job's tune of a spooled upload: the synchronous route's own steps (hash, decode,
    score, tune, store), with progress and cancel between them."""

    def work(progress: Progress) -> None:
        model = service.loaded_model
        with path.open("rb") as fileobj:
            data_sha256 = sha256_of_file(fileobj)
            progress.check()
            data = read_validation_file(
                fileobj, fmt, service.input_spec, max_data_bytes=max_data_bytes
            )
        progress.update(**{"pass_index": 1, "passes": 1, "partitions": 1, "rows": data.n_samples})
        progress.check()
        tuned = tune_data(
            model,
            data,
            params,
            device=service.settings.device,
            with_curves=store,
            progress=progress.add_rows if data.scores is None else None,
        )
        progress.check()
        progress.update(rows_done=data.n_samples, partitions_done=1)
        finish(
            service, progress, tuned, params, list(model.labels), report_keys,
            store=store, activate=activate, data_sha256=data_sha256, n_samples=data.n_samples,
        )  # fmt: skip

    return work


_TUNE_ARGUMENTS = frozenset(inspect.signature(tuning.tune_thresholds).parameters)


def source_tune_kwargs(params: TuneParams, labels: list[str]) -> dict[str, Any]:
    """`tune_dataset`'s tune_kwargs: the options as the synchronous tune passes them."""
    keywords = tune_keywords(params, _TUNE_ARGUMENTS.__contains__)
    return {
        "objective": params.objective,
        **keywords,
        "label_names": labels,
        "return_curves": True,
    }


def tuned_from_result(
    result: tuning.TuningResult, params: TuneParams, labels: list[str]
) -> TunedSet:
    """What `tune_data` makes of a tune's result, for a dataset's result. No scores are in
    memory, so of the drift gauges' expectations only the positive rate is kept (each
    label's predicted positives over the rows, what `expected_rates` would count); the mean
    score is left out, and so is calibration."""
    report = result.to_dict(label_names=labels)
    stored_params = {**report["params"], "decision_rule": params.decision_rule, "k": params.k}
    lower = getattr(result, "lower_thresholds", None)
    if lower is not None:
        stored_params["lower_thresholds"] = [float(t) for t in lower]
    predicted = [row.get("predicted_positives") for row in report.get("per_label") or []]
    n_rows = int(report.get("n_samples") or 0)
    if n_rows and len(predicted) == len(labels) and None not in predicted:
        stored_params["expected"] = {"positive_rate": [int(p) / n_rows for p in predicted]}
    return TunedSet(
        params=stored_params,
        thresholds=[float(t) for t in result.thresholds],
        result={key: report.get(key) for key in RESULT_KEYS},
        report=report,
        curves=label_curves(result, labels) if result.curves is not None else None,
    )


def source_work(
    service: Service,
    source: str,
    params: TuneParams,
    *,
    activate: bool,
    store: bool,
    report_keys: tuple[str, ...],
) -> Work:
    """A job's tune of a Parquet dataset through the dataset engine (`tune_dataset`):
    in this process one partition at a time, or on LABELCUT_DASK_SCHEDULER's cluster."""

    def work(progress: Progress) -> None:
        from labelcut.app import engine  # the dataset engine: dask and pyarrow, loaded late

        model = service.loaded_model
        labels = list(model.labels)
        scheduler = service.settings.dask_scheduler

        def on_progress(p: Any) -> None:
            progress.update(
                **{
                    "pass_index": p.pass_index,
                    "passes": p.passes,
                    "partitions_done": p.partitions_done,
                    "partitions": p.partitions,
                    "rows_done": p.rows_done,
                    "rows": p.rows,
                }
            )

        try:
            result = engine.tune_dataset(
                source,
                engine="dask" if scheduler else "local",
                scheduler=scheduler,
                model_dir=str(model.directory),
                device=service.settings.device,
                tune_kwargs=source_tune_kwargs(params, labels),
                progress=on_progress,
                cancel=progress.cancel,
            )
        except engine.Cancelled as exc:
            raise JobCancelled(progress.job_id) from exc
        except engine.DatasetError as exc:
            raise JobFailed(str(exc)) from exc
        progress.check()
        tuned = tuned_from_result(result, params, labels)
        finish(
            service, progress, tuned, params, labels, report_keys,
            store=store, activate=activate, data_sha256="unknown",
            n_samples=int(result.n_samples),
        )  # fmt: skip

    return work


def upload_budget_bytes(data_bytes: int, n_labels: int = 0) -> int:
    """What an upload job holds of the tunes' memory budget, as a synchronous tune does."""
    return tune_cost(data_bytes, n_labels)
