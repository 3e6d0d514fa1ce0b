"""ThresholdStore: every threshold set ever tuned, with one active set per model, in SQLite
(one file, the default) or PostgreSQL (shared by every replica), through SQLAlchemy Core.

Sets are immutable once written, except their `archived` flag; nothing is deleted. Which
set is active is a pointer per model, keyed by the model's identity (weights sha256 and
labels in order), so a set is never applied to another model or to the same weights with
their labels reordered. Every change is one transaction, and writers are serialised
(SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so a process killed at any moment
leaves the old state or the new one, and activation ids grow in commit order.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from labelcut.app.store import schema as s
from labelcut.app.store.engine import StoreLocation, locate, make_engine
from labelcut.app.store.model import (
    ActivePointer,
    ModelIdentity,
    ModelMismatch,
    NewThresholdSet,
    SetIsActive,
    StoreUnavailable,
    ThresholdSet,
    UnknownThresholdSet,
)

log = logging.getLogger("labelcut")

# Both backends store 64-bit signed integers; a larger Python int would raise in the driver.
_MAX_ID = 2**63 - 1
NOTIFY_CHANNEL = "labelcut_active"


@dataclass(frozen=True)
class StoreHealth:
    """The outcome of the store's most recent database round trip."""

    reachable: bool
    since: float  # time.time() when it became so
    error: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _check_id(set_id: int) -> None:
    if not -_MAX_ID <= set_id <= _MAX_ID:
        raise UnknownThresholdSet(f"No threshold set has id {set_id}.")


def _row_to_set(row: Mapping[str, Any]) -> ThresholdSet:
    return ThresholdSet(
        id=int(row["id"]),
        created_at=row["created_at"],
        model_name=row["model_name"],
        model_sha256=row["model_sha256"],
        labels=json.loads(row["labels"]),
        objective=row["objective"],
        params=json.loads(row["params"]),
        data_sha256=row["data_sha256"],
        n_samples=int(row["n_samples"]),
        thresholds=json.loads(row["thresholds"]),
        result=json.loads(row["result"]),
        archived=bool(row["archived"]),
    )


def _is_unavailable(exc: BaseException) -> bool:
    """Connection refused or lost, pool exhausted, or SQLite locked past its timeout."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


class ThresholdStore:
    """The threshold store on SQLite (`path`, or `url="sqlite:///..."`) or PostgreSQL
    (`url="postgresql://..."`). Thread-safe. Opening upgrades the schema; raises
    `StoreUnavailable` when the database cannot be reached."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        url: str | None = None,
        location: StoreLocation | None = None,
    ) -> None:
        if location is None:
            if path is None and not url:
                raise ValueError("ThresholdStore needs a SQLite path or a database URL.")
            location = locate(url, Path(path) if path is not None else Path())
        self.where: StoreLocation = location
        self.engine = make_engine(self.where)
        self._health = StoreHealth(reachable=True, since=time.time())
        self._health_lock = threading.Lock()
        self._open()

    # --- identity and health ------------------------------------------------------------

    @property
    def dialect(self) -> str:
        return self.where.dialect

    @property
    def shown(self) -> str:
        """The store's URL with the password masked: safe for logs and answers."""
        return self.where.shown

    @property
    def health(self) -> StoreHealth:
        return self._health

    def _mark(self, reachable: bool, error: str | None = None) -> None:
        with self._health_lock:
            if reachable != self._health.reachable:
                if reachable:
                    log.warning("The threshold store (%s) is reachable again.", self.shown)
                else:
                    log.error("The threshold store is unreachable: %s", error)
                self._health = StoreHealth(reachable, time.time(), error)
            elif not reachable:
                self._health = StoreHealth(False, self._health.since, error)

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        orig = getattr(exc, "orig", None) or exc
        reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        message = self.where.scrub(f"The threshold store ({self.shown}) is unreachable: {reason}")
        self._mark(False, message)
        return StoreUnavailable(message)

    @contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Connection]:
        """One transaction; database failures become StoreUnavailable (nothing written)."""
        try:
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(labelcut_write=True)
                with conn.begin():
                    if write:
                        s.lock_for_writes(conn)
                    yield conn
        except Exception as exc:
            if _is_unavailable(exc):
                raise self._unavailable(exc) from exc
            raise
        self._mark(True)

    def transaction(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        """One transaction for the store's other tables (app/store/jobs.py): writers
        serialised as every write here, database failures raised as StoreUnavailable."""
        return self._tx(write=write)

    def _open(self) -> None:
        try:
            with self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    # The version-1 rebuild renames tables that others reference.
                    conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
                conn.execution_options(labelcut_write=True)
                with conn.begin():
                    before, after = s.upgrade(conn)
                    if self.dialect == "sqlite":
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise RuntimeError(f"Threshold store references are broken: {broken}")
        except Exception as exc:
            if _is_unavailable(exc):
                raise self._unavailable(exc) from exc
            raise
        if before == 0:
            log.info("Threshold store %s: created (schema version %d)", self.shown, after)
        elif before != after:
            log.warning(
                "Threshold store %s: schema upgraded from version %d to %d",
                self.shown,
                before,
                after,
            )

    def schema_version(self) -> int:
        with self._tx() as conn:
            return s.current_version(conn)

    def close(self) -> None:
        self.engine.dispose()

    # --- writing ------------------------------------------------------------------------

    def save(
        self,
        new: NewThresholdSet,
        *,
        activate: bool,
        curves: list[dict[str, Any]] | None = None,
        within: Callable[[Connection, int], None] | None = None,
    ) -> ThresholdSet:
        """Store `new`, its curves, and (if `activate`) make it its model's active set: atomically.

        `curves` (JSON-ready, one entry per label) are kept compressed beside the set and
        read back only by `curves()`, so listing sets never inflates them. `within(conn,
        set_id)` runs in the same transaction before it commits (a job records its outcome
        there); if it raises, nothing is stored.
        """
        if len(new.labels) != len(new.thresholds):
            raise ValueError("labels and thresholds must have the same length.")
        payload = None if curves is None else zlib.compress(json.dumps(curves).encode(), level=6)
        with self._tx(write=True) as conn:
            inserted = conn.execute(
                s.threshold_sets.insert().values(
                    created_at=_now(),
                    model_name=new.model_name,
                    model_sha256=new.model_sha256,
                    model_key=new.model_key,
                    labels=json.dumps(new.labels),
                    objective=new.objective,
                    params=json.dumps(new.params),
                    data_sha256=new.data_sha256,
                    n_samples=new.n_samples,
                    thresholds=json.dumps(new.thresholds),
                    result=json.dumps(new.result),
                    archived=False,
                )
            )
            set_id = int(inserted.inserted_primary_key[0])
            if payload is not None:
                conn.execute(s.threshold_curves.insert().values(set_id=set_id, payload=payload))
            if activate:
                self._set_active(conn, new.model_key, new.model_sha256, set_id)
            if within is not None:
                within(conn, set_id)
            return self._get(conn, set_id)

    def activate(self, set_id: int, *, model: ModelIdentity) -> ThresholdSet:
        """Make set `set_id` the active set of `model` (and un-archive it: it is in use).

        Raises `UnknownThresholdSet` for an unknown id and `ModelMismatch` when the set was
        tuned for other weights or other labels (or their order); nothing changes then.
        """
        _check_id(set_id)
        with self._tx(write=True) as conn:
            found = self._get(conn, set_id)
            reason = found.mismatch_with(model)
            if reason is not None:
                raise ModelMismatch(reason)
            if found.archived:
                conn.execute(
                    s.threshold_sets.update()
                    .where(s.threshold_sets.c.id == set_id)
                    .values(archived=False)
                )
            self._set_active(conn, model.key, model.sha256, set_id)
            return self._get(conn, set_id)

    def archive(self, set_id: int, *, archived: bool = True) -> ThresholdSet:
        """Hide set `set_id` from the default history (`archived=False` shows it again).

        Raises `UnknownThresholdSet`, or `SetIsActive` when it is some model's active set.
        """
        _check_id(set_id)
        with self._tx(write=True) as conn:
            found = self._get(conn, set_id)
            if archived:
                active_key = conn.execute(
                    select(s.active_sets.c.model_key).where(s.active_sets.c.set_id == set_id)
                ).first()
                if active_key is not None:
                    raise SetIsActive(
                        f"Threshold set {set_id} is the active set of model "
                        f"'{found.model_name}'; activate another set before archiving it."
                    )
            conn.execute(
                s.threshold_sets.update()
                .where(s.threshold_sets.c.id == set_id)
                .values(archived=archived)
            )
            return self._get(conn, set_id)

    def _set_active(self, conn: Connection, key: str, sha256: str, set_id: int) -> None:
        when = _now()
        activation_id = conn.execute(
            s.activations.insert().values(
                model_key=key, model_sha256=sha256, set_id=set_id, activated_at=when
            )
        ).inserted_primary_key[0]
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        values = {
            "model_key": key,
            "model_sha256": sha256,
            "set_id": set_id,
            "activation_id": activation_id,
            "activated_at": when,
        }
        statement = insert(s.active_sets).values(**values)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[s.active_sets.c.model_key],
                set_={k: statement.excluded[k] for k in values if k != "model_key"},
            )
        )
        if self.dialect == "postgresql":
            # Delivered to every listening replica when (and only if) this commits.
            conn.execute(
                text("SELECT pg_notify(:channel, :key)"), {"channel": NOTIFY_CHANNEL, "key": key}
            )

    # --- reading ------------------------------------------------------------------------

    @staticmethod
    def _get(conn: Connection, set_id: int) -> ThresholdSet:
        row = (
            conn.execute(select(s.threshold_sets).where(s.threshold_sets.c.id == set_id))
            .mappings()
            .first()
        )
        if row is None:
            raise UnknownThresholdSet(f"No threshold set has id {set_id}.")
        return _row_to_set(row)

    def get(self, set_id: int) -> ThresholdSet:
        _check_id(set_id)
        with self._tx() as conn:
            return self._get(conn, set_id)

    def curves(self, set_id: int) -> list[dict[str, Any]] | None:
        """The per-label curves stored with set `set_id`, or None when it has none."""
        _check_id(set_id)
        with self._tx() as conn:
            self._get(conn, set_id)  # UnknownThresholdSet for an unknown id
            payload = conn.execute(
                select(s.threshold_curves.c.payload).where(s.threshold_curves.c.set_id == set_id)
            ).scalar()
        return None if payload is None else json.loads(zlib.decompress(payload))

    def active(self, key: str) -> ActivePointer | None:
        """The active set of the model with identity `key`, with its activation id."""
        query = (
            select(s.threshold_sets, s.active_sets.c.activation_id)
            .join(s.active_sets, s.active_sets.c.set_id == s.threshold_sets.c.id)
            .where(s.active_sets.c.model_key == key)
        )
        with self._tx() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else ActivePointer(_row_to_set(row), int(row["activation_id"]))

    def active_for(self, model: ModelIdentity) -> ThresholdSet | None:
        """The active set of this model, or None when it never had one."""
        found = self.active(model.key)
        return None if found is None else found.set

    def active_activation_id(self, key: str) -> int | None:
        """Only the activation id of `key`'s active set: what replicas poll."""
        with self._tx() as conn:
            value = conn.execute(
                select(s.active_sets.c.activation_id).where(s.active_sets.c.model_key == key)
            ).scalar()
        return None if value is None else int(value)

    def actives_for_weights(self, sha256: str) -> list[ActivePointer]:
        """Active sets of every model with these weights (whatever their labels)."""
        query = (
            select(s.threshold_sets, s.active_sets.c.activation_id)
            .join(s.active_sets, s.active_sets.c.set_id == s.threshold_sets.c.id)
            .where(s.active_sets.c.model_sha256 == sha256)
        )
        with self._tx() as conn:
            rows = conn.execute(query).mappings().all()
        return [ActivePointer(_row_to_set(row), int(row["activation_id"])) for row in rows]

    def last_activation(self) -> tuple[int, str] | None:
        """(set id, model sha256) of the most recent activation of any model."""
        query = (
            select(s.activations.c.set_id, s.activations.c.model_sha256)
            .order_by(s.activations.c.id.desc())
            .limit(1)
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def history(
        self,
        *,
        model_sha256: str | None = None,
        model_key: str | None = None,
        include_archived: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ThresholdSet]:
        """Stored sets, newest first; only one model's (by weights, or by full identity)
        when asked; archived sets only with `include_archived`."""
        query = select(s.threshold_sets).order_by(s.threshold_sets.c.id.desc())
        if model_sha256 is not None:
            query = query.where(s.threshold_sets.c.model_sha256 == model_sha256)
        if model_key is not None:
            query = query.where(s.threshold_sets.c.model_key == model_key)
        if not include_archived:
            query = query.where(s.threshold_sets.c.archived.is_(False))
        with self._tx() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
        return [_row_to_set(row) for row in rows]

    def activations(self, key: str | None = None) -> list[tuple[int, int]]:
        """(activation id, set id) of every activation, oldest first; one model's if `key`."""
        query = select(s.activations.c.id, s.activations.c.set_id).order_by(s.activations.c.id)
        if key is not None:
            query = query.where(s.activations.c.model_key == key)
        with self._tx() as conn:
            return [(int(a), int(b)) for a, b in conn.execute(query).all()]

    def count(self) -> int:
        with self._tx() as conn:
            return int(
                conn.execute(select(func.count()).select_from(s.threshold_sets)).scalar_one()
            )
