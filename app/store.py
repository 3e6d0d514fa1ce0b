"""ThresholdStore: every threshold set ever tuned, in SQLite, with one active set per model.

Sets are immutable once written. Which set is active is a pointer per model
(keyed by the model's sha256), so a service restarted with another model never
applies thresholds tuned for a different one. Every change is one transaction
in WAL mode, so a process killed at any moment leaves either the old state or
the new one, never half of either.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS threshold_sets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at   TEXT    NOT NULL,
    model_name   TEXT    NOT NULL,
    model_sha256 TEXT    NOT NULL,
    labels       TEXT    NOT NULL,
    objective    TEXT    NOT NULL,
    params       TEXT    NOT NULL,
    data_sha256  TEXT    NOT NULL,
    n_samples    INTEGER NOT NULL,
    thresholds   TEXT    NOT NULL,
    result       TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS active_sets (
    model_sha256 TEXT PRIMARY KEY,
    set_id       INTEGER NOT NULL REFERENCES threshold_sets(id),
    activated_at TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS threshold_curves (
    set_id  INTEGER PRIMARY KEY REFERENCES threshold_sets(id),
    payload BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS activations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    model_sha256 TEXT    NOT NULL,
    set_id       INTEGER NOT NULL REFERENCES threshold_sets(id),
    activated_at TEXT    NOT NULL
);
"""


# SQLite integers are signed 64-bit; a larger Python int raises OverflowError in the driver.
_MAX_ID = 2**63 - 1


class UnknownThresholdSet(LookupError):
    """No threshold set has the requested id."""


class ModelMismatch(ValueError):
    """A threshold set was tuned for another model than the one it is applied to."""


@dataclass(frozen=True)
class NewThresholdSet:
    """What a tune produced, before the store gives it an id."""

    model_name: str
    model_sha256: str
    labels: list[str]
    objective: str
    params: dict[str, Any]
    data_sha256: str
    n_samples: int
    thresholds: list[float]
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ThresholdSet(NewThresholdSet):
    """A stored set. `thresholds[i]` belongs to `labels[i]`; positive iff score >= threshold."""

    id: int = 0
    created_at: str = ""

    def threshold_map(self) -> dict[str, float]:
        return dict(zip(self.labels, self.thresholds, strict=True))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _check_id(set_id: int) -> None:
    if not -_MAX_ID <= set_id <= _MAX_ID:
        raise UnknownThresholdSet(f"No threshold set has id {set_id}.")


def _row_to_set(row: sqlite3.Row) -> ThresholdSet:
    return ThresholdSet(
        id=row["id"],
        created_at=row["created_at"],
        model_name=row["model_name"],
        model_sha256=row["model_sha256"],
        labels=json.loads(row["labels"]),
        objective=row["objective"],
        params=json.loads(row["params"]),
        data_sha256=row["data_sha256"],
        n_samples=row["n_samples"],
        thresholds=json.loads(row["thresholds"]),
        result=json.loads(row["result"]),
    )


class ThresholdStore:
    """SQLite-backed, thread-safe store of threshold sets (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self._transaction() as conn:
            # executescript() would COMMIT our transaction; run statements one by one.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def save(
        self,
        new: NewThresholdSet,
        *,
        activate: bool,
        curves: list[dict[str, Any]] | None = None,
    ) -> ThresholdSet:
        """Store `new`, its curves, and (if `activate`) make it its model's active set: atomically.

        `curves` (JSON-ready, one entry per label) are kept compressed beside the set and
        read back only by `curves()`, so listing sets never inflates them.
        """
        if len(new.labels) != len(new.thresholds):
            raise ValueError("labels and thresholds must have the same length.")
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO threshold_sets (created_at, model_name, model_sha256, labels,"
                " objective, params, data_sha256, n_samples, thresholds, result)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _now(),
                    new.model_name,
                    new.model_sha256,
                    json.dumps(new.labels),
                    new.objective,
                    json.dumps(new.params),
                    new.data_sha256,
                    new.n_samples,
                    json.dumps(new.thresholds),
                    json.dumps(new.result),
                ),
            )
            set_id = int(cursor.lastrowid or 0)
            if curves is not None:
                payload = zlib.compress(json.dumps(curves).encode(), level=6)
                conn.execute(
                    "INSERT INTO threshold_curves (set_id, payload) VALUES (?, ?)",
                    (set_id, payload),
                )
            if activate:
                self._set_active(conn, new.model_sha256, set_id)
            row = conn.execute("SELECT * FROM threshold_sets WHERE id = ?", (set_id,)).fetchone()
        return _row_to_set(row)

    def activate(self, set_id: int, *, model_sha256: str) -> ThresholdSet:
        """Make set `set_id` the active set of the model `model_sha256`.

        Raises `UnknownThresholdSet` for an unknown id and `ModelMismatch` when the
        set was tuned for another model; the active set is unchanged in both cases.
        """
        _check_id(set_id)
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM threshold_sets WHERE id = ?", (set_id,)).fetchone()
            if row is None:
                raise UnknownThresholdSet(f"No threshold set has id {set_id}.")
            found = _row_to_set(row)
            if found.model_sha256 != model_sha256:
                raise ModelMismatch(
                    f"Threshold set {set_id} was tuned for model '{found.model_name}' "
                    f"(sha256 {found.model_sha256[:12]}...), not for the loaded model "
                    f"(sha256 {model_sha256[:12]}...)."
                )
            self._set_active(conn, model_sha256, set_id)
        return found

    @staticmethod
    def _set_active(conn: sqlite3.Connection, model_sha256: str, set_id: int) -> None:
        when = _now()
        conn.execute(
            "INSERT INTO active_sets (model_sha256, set_id, activated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(model_sha256) DO UPDATE SET set_id = excluded.set_id,"
            " activated_at = excluded.activated_at",
            (model_sha256, set_id, when),
        )
        conn.execute(
            "INSERT INTO activations (model_sha256, set_id, activated_at) VALUES (?, ?, ?)",
            (model_sha256, set_id, when),
        )

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def get(self, set_id: int) -> ThresholdSet:
        _check_id(set_id)
        rows = self._read("SELECT * FROM threshold_sets WHERE id = ?", (set_id,))
        if not rows:
            raise UnknownThresholdSet(f"No threshold set has id {set_id}.")
        return _row_to_set(rows[0])

    def curves(self, set_id: int) -> list[dict[str, Any]] | None:
        """The per-label curves stored with set `set_id`, or None when it has none."""
        self.get(set_id)  # UnknownThresholdSet for an unknown id
        rows = self._read("SELECT payload FROM threshold_curves WHERE set_id = ?", (set_id,))
        return json.loads(zlib.decompress(rows[0]["payload"])) if rows else None

    def active_for(self, model_sha256: str) -> ThresholdSet | None:
        """The active set of this model, or None when it never had one."""
        rows = self._read(
            "SELECT s.* FROM active_sets a JOIN threshold_sets s ON s.id = a.set_id"
            " WHERE a.model_sha256 = ?",
            (model_sha256,),
        )
        return _row_to_set(rows[0]) if rows else None

    def last_activation(self) -> tuple[int, str] | None:
        """(set id, model sha256) of the most recent activation of any model."""
        rows = self._read("SELECT set_id, model_sha256 FROM activations ORDER BY id DESC LIMIT 1")
        return (rows[0]["set_id"], rows[0]["model_sha256"]) if rows else None

    def history(
        self, *, model_sha256: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[ThresholdSet]:
        """Stored sets, newest first, optionally only those of one model."""
        if model_sha256 is None:
            rows = self._read(
                "SELECT * FROM threshold_sets ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset)
            )
        else:
            rows = self._read(
                "SELECT * FROM threshold_sets WHERE model_sha256 = ?"
                " ORDER BY id DESC LIMIT ? OFFSET ?",
                (model_sha256, limit, offset),
            )
        return [_row_to_set(row) for row in rows]

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) AS n FROM threshold_sets")[0]["n"])
