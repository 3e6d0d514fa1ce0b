"""Tune jobs recorded in the threshold store (table `tune_jobs`, schema version 3), so every
replica sharing the store sees each job's state and progress, and a job left behind by a
process that died is marked failed instead of reading `running` for ever.

States: `queued` -> `running` -> `succeeded` | `failed` | `cancelled` (a queued job may be
cancelled or failed directly). Every change is one conditional UPDATE in a serialised write
transaction, so two replicas (or a cancel racing the end of a run) never both win: a
succeeded job's set is stored in the same transaction that marks it succeeded
(`finish_within`), and a cancel that came first rolls that transaction back.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from labelcut.app.store import schema as s
from labelcut.app.store.core import ThresholdStore

ACTIVE_STATES = ("queued", "running")
FINISHED_STATES = ("succeeded", "failed", "cancelled")
STATES = (*ACTIVE_STATES, *FINISHED_STATES)
_T = s.tune_jobs
INTERRUPTED = "interrupted by a restart"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class UnknownJob(LookupError):
    """No job has this id (404)."""


class JobFinished(Exception):
    """The job already ended: it cannot be cancelled (409)."""


class JobCancelled(Exception):
    """A cancel was requested: the job stops and stores nothing."""


@dataclass(frozen=True)
class JobRecord:
    """One row of `tune_jobs`, decoded. `request`: the options as sent; `progress`: the last
    progress written (`pass`, `passes`, `partitions_done`, `partitions`, `rows_done`,
    `rows`, `elapsed_s`); `set_id`: the set a succeeded job stored; `result`: the report of
    a job that stored nothing (store=false)."""

    id: str
    kind: str
    state: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    model_name: str
    model_key: str
    source: str | None
    request: dict[str, Any]
    progress: dict[str, Any]
    set_id: int | None
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    runner: str
    heartbeat_at: float


def _record(row: Mapping[str, Any]) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        state=row["state"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        model_name=row["model_name"],
        model_key=row["model_key"],
        source=row["source"],
        request=json.loads(row["request"]),
        progress=json.loads(row["progress"]),
        set_id=None if row["set_id"] is None else int(row["set_id"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"],
        cancel_requested=bool(row["cancel_requested"]),
        runner=row["runner"],
        heartbeat_at=float(row["heartbeat_at"]),
    )


def new_job_id() -> str:
    return uuid.uuid4().hex


def valid_job_id(job_id: str) -> bool:
    """A job id is 32 lower-case hex digits; anything else names no job."""
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)


class JobStore:
    """The jobs of one `ThresholdStore` (SQLite or PostgreSQL). Thread-safe; blocking."""

    def __init__(self, store: ThresholdStore) -> None:
        self.store = store

    # --- reading ------------------------------------------------------------------------

    @staticmethod
    def _get(conn: Connection, job_id: str) -> JobRecord:
        if not valid_job_id(job_id):
            raise UnknownJob(f"No job has id '{job_id[:64]}'.")
        row = conn.execute(select(_T).where(_T.c.id == job_id)).mappings().first()
        if row is None:
            raise UnknownJob(f"No job has id '{job_id}'.")
        return _record(row)

    def get(self, job_id: str) -> JobRecord:
        with self.store.transaction() as conn:
            return self._get(conn, job_id)

    def list(
        self, *, limit: int = 50, offset: int = 0, state: str | None = None
    ) -> list[JobRecord]:
        """Jobs, newest first (by creation time), only those in `state` when given."""
        query = select(_T).order_by(_T.c.created_at.desc(), _T.c.id)
        if state is not None:
            query = query.where(_T.c.state == state)
        with self.store.transaction() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
        return [_record(row) for row in rows]

    # --- the life of a job --------------------------------------------------------------

    def create(
        self,
        *,
        job_id: str,
        kind: str,
        model_name: str,
        model_key: str,
        source: str | None,
        request: Mapping[str, Any],
        progress: Mapping[str, Any],
        runner: str,
    ) -> JobRecord:
        with self.store.transaction(write=True) as conn:
            conn.execute(
                _T.insert().values(
                    id=job_id,
                    kind=kind,
                    state="queued",
                    created_at=now_iso(),
                    model_name=model_name,
                    model_key=model_key,
                    source=source,
                    request=json.dumps(dict(request)),
                    progress=json.dumps(dict(progress)),
                    cancel_requested=False,
                    runner=runner,
                    heartbeat_at=time.time(),
                )
            )
            return self._get(conn, job_id)

    def _update(self, job_id: str, states: tuple[str, ...], **values: Any) -> bool:
        """UPDATE the job if it is in one of `states`: True when it was."""
        with self.store.transaction(write=True) as conn:
            return self._update_in(conn, job_id, states, **values)

    @staticmethod
    def _update_in(conn: Connection, job_id: str, states: tuple[str, ...], **values: Any) -> bool:
        done = conn.execute(
            _T.update().where(_T.c.id == job_id, _T.c.state.in_(states)).values(**values)
        )
        return done.rowcount == 1

    def start(self, job_id: str) -> bool:
        """queued -> running; False when it is no longer queued (cancelled meanwhile)."""
        return self._update(
            job_id, ("queued",), state="running", started_at=now_iso(), heartbeat_at=time.time()
        )

    def write_progress(self, job_id: str, progress: Mapping[str, Any]) -> bool:
        """Record a running job's progress; True when a cancel has been requested (by any
        replica), so the caller stops."""
        with self.store.transaction(write=True) as conn:
            self._update_in(
                conn,
                job_id,
                ("running",),
                progress=json.dumps(dict(progress)),
                heartbeat_at=time.time(),
            )
            row = conn.execute(
                select(_T.c.state, _T.c.cancel_requested).where(_T.c.id == job_id)
            ).first()
        return row is None or bool(row[1]) or row[0] != "running"

    def finish_within(
        self, job_id: str, progress: Mapping[str, Any]
    ) -> Callable[[Connection, int], None]:
        """For `ThresholdStore.save(within=...)`: mark the job succeeded with the new set in
        the save's own transaction, or raise JobCancelled (nothing is stored) when a cancel
        was requested first."""

        def within(conn: Connection, set_id: int) -> None:
            found = self._get(conn, job_id)
            if found.cancel_requested or found.state != "running":
                raise JobCancelled(job_id)
            self._update_in(
                conn,
                job_id,
                ("running",),
                state="succeeded",
                set_id=set_id,
                finished_at=now_iso(),
                progress=json.dumps(dict(progress)),
            )

        return within

    def succeed(
        self, job_id: str, *, result: Mapping[str, Any], progress: Mapping[str, Any]
    ) -> bool:
        """A job that stores no set: running -> succeeded with its report, unless a cancel
        came first (then False: the caller marks it cancelled)."""
        with self.store.transaction(write=True) as conn:
            if self._get(conn, job_id).cancel_requested:
                return False
            return self._update_in(
                conn,
                job_id,
                ("running",),
                state="succeeded",
                result=json.dumps(dict(result)),
                finished_at=now_iso(),
                progress=json.dumps(dict(progress)),
            )

    def fail(self, job_id: str, error: str, progress: Mapping[str, Any] | None = None) -> bool:
        values: dict[str, Any] = {"state": "failed", "error": error, "finished_at": now_iso()}
        if progress is not None:
            values["progress"] = json.dumps(dict(progress))
        return self._update(job_id, ACTIVE_STATES, **values)

    def mark_cancelled(self, job_id: str, progress: Mapping[str, Any] | None = None) -> bool:
        values: dict[str, Any] = {
            "state": "cancelled",
            "cancel_requested": True,
            "finished_at": now_iso(),
        }
        if progress is not None:
            values["progress"] = json.dumps(dict(progress))
        return self._update(job_id, ACTIVE_STATES, **values)

    def request_cancel(self, job_id: str) -> JobRecord:
        """DELETE /jobs/{id}: a queued job is cancelled at once; a running one is asked to
        stop (its process sees the flag within a progress write or a heartbeat) and reads
        `cancelled` once it has. Raises UnknownJob, or JobFinished for an ended job."""
        with self.store.transaction(write=True) as conn:
            found = self._get(conn, job_id)
            if found.state in FINISHED_STATES:
                raise JobFinished(f"Job {job_id} has already {found.state}; nothing to cancel.")
            if found.state == "queued":
                self._update_in(
                    conn,
                    job_id,
                    ("queued",),
                    state="cancelled",
                    cancel_requested=True,
                    finished_at=now_iso(),
                )
            else:
                self._update_in(conn, job_id, ("running",), cancel_requested=True)
            return self._get(conn, job_id)

    # --- keeping the table honest -------------------------------------------------------

    def heartbeat(self, runner: str) -> list[str]:
        """Refresh the heartbeat of `runner`'s live jobs; the ids among them a cancel was
        requested for (by any replica)."""
        with self.store.transaction(write=True) as conn:
            conn.execute(
                _T.update()
                .where(_T.c.runner == runner, _T.c.state.in_(ACTIVE_STATES))
                .values(heartbeat_at=time.time())
            )
            rows = conn.execute(
                select(_T.c.id).where(
                    _T.c.runner == runner,
                    _T.c.state == "running",
                    _T.c.cancel_requested.is_(True),
                )
            ).all()
        return [row[0] for row in rows]

    def sweep(
        self,
        *,
        me: str,
        runner_is_gone: Callable[[str], bool],
        stale_s: float,
        forget_before: str,
    ) -> tuple[int, int]:
        """Fail live jobs whose process is gone (`runner_is_gone`: a dead process on this
        host) or sent no heartbeat for `stale_s`, and forget finished jobs that ended before
        `forget_before` (ISO time). Returns (failed, forgotten)."""
        stale_before = time.time() - stale_s
        with self.store.transaction(write=True) as conn:
            rows = conn.execute(
                select(_T.c.id, _T.c.runner, _T.c.heartbeat_at).where(
                    _T.c.state.in_(ACTIVE_STATES), _T.c.runner != me
                )
            ).all()
            failed = 0
            for job_id, runner, heartbeat_at in rows:
                if runner_is_gone(runner):
                    why = f"{INTERRUPTED}: the server running it ({runner}) stopped."
                elif float(heartbeat_at) < stale_before:
                    why = (
                        f"{INTERRUPTED}: the server running it ({runner}) sent no heartbeat "
                        f"for {stale_s:g} s."
                    )
                else:
                    continue
                failed += self._update_in(
                    conn, job_id, ACTIVE_STATES, state="failed", error=why, finished_at=now_iso()
                )
            forgotten = conn.execute(
                _T.delete().where(_T.c.state.in_(FINISHED_STATES), _T.c.finished_at < forget_before)
            ).rowcount
        return failed, int(forgotten or 0)

    def fail_mine(self, runner: str, error: str) -> int:
        """At shutdown: fail every live job of this process (their threads stop writing)."""
        with self.store.transaction(write=True) as conn:
            done = conn.execute(
                _T.update()
                .where(_T.c.runner == runner, _T.c.state.in_(ACTIVE_STATES))
                .values(state="failed", error=error, finished_at=now_iso())
            )
        return int(done.rowcount or 0)
