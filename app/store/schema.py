"""The store's tables (SQLAlchemy Core, one definition for SQLite and PostgreSQL), its
schema version, and the ordered steps that upgrade an older store at start.

Versions:
  1. the first release (no version table): sets, active pointer per weights sha256,
     curves, activations.
  2. a model is its weights *and* its labels in order (`model_key`, issue 12 item 11);
     `archived` on sets; `activation_id` on the active pointer, so replicas can tell
     which of two snapshots is newer.
  3. `tune_jobs`: tunes that run as jobs (issue 17), their state, progress and outcome.

An empty database gets the latest schema at once; an older one runs every step after its
version, in one transaction, under a lock, so replicas starting together upgrade it once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    false,
    inspect,
    select,
    text,
)

from labelcut.app.store.model import model_key

log = logging.getLogger("labelcut")

LATEST_VERSION = 3
# pg_advisory_xact_lock key for the upgrade and for every write: writes are serialised,
# so activation ids grow in commit order on PostgreSQL as they do on SQLite.
PG_LOCK_KEY = 0x6C6162656C637574  # "labelcut"

# SQLite's rowid alias must be exactly INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_Id = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

threshold_sets = Table(
    "threshold_sets",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("created_at", Text, nullable=False),
    Column("model_name", Text, nullable=False),
    Column("model_sha256", Text, nullable=False),
    Column("model_key", Text, nullable=False),
    Column("labels", Text, nullable=False),  # JSON list, model output order
    Column("objective", Text, nullable=False),
    Column("params", Text, nullable=False),  # JSON
    Column("data_sha256", Text, nullable=False),
    Column("n_samples", BigInteger, nullable=False),
    Column("thresholds", Text, nullable=False),  # JSON list, same order as labels
    Column("result", Text, nullable=False),  # JSON
    Column("archived", Boolean, nullable=False, server_default=false()),
    Index("ix_threshold_sets_model_key", "model_key", "id"),
    Index("ix_threshold_sets_model_sha256", "model_sha256"),
    sqlite_autoincrement=True,
)

active_sets = Table(
    "active_sets",
    metadata,
    Column("model_key", Text, primary_key=True),
    Column("model_sha256", Text, nullable=False),
    Column("set_id", _Id, ForeignKey("threshold_sets.id"), nullable=False),
    Column("activation_id", _Id, nullable=False),
    Column("activated_at", Text, nullable=False),
)

threshold_curves = Table(
    "threshold_curves",
    metadata,
    Column("set_id", _Id, ForeignKey("threshold_sets.id"), primary_key=True, autoincrement=False),
    Column("payload", LargeBinary, nullable=False),  # zlib-compressed JSON
)

activations = Table(
    "activations",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("model_key", Text, nullable=False),
    Column("model_sha256", Text, nullable=False),
    Column("set_id", _Id, ForeignKey("threshold_sets.id"), nullable=False),
    Column("activated_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

# Tunes run as jobs (app/jobs.py, app/store/jobs.py). `runner` names the process running
# it (host:pid:start), `heartbeat_at` (epoch seconds) is refreshed while it lives, so a job
# left behind by a process that died can be told from one another replica still runs.
tune_jobs = Table(
    "tune_jobs",
    metadata,
    Column("id", Text, primary_key=True),  # 32 hex digits (uuid4)
    Column("kind", Text, nullable=False),  # "upload" | "source"
    Column("state", Text, nullable=False),  # queued | running | succeeded | failed | cancelled
    Column("created_at", Text, nullable=False),
    Column("started_at", Text),
    Column("finished_at", Text),
    Column("model_name", Text, nullable=False),
    Column("model_key", Text, nullable=False),
    Column("source", Text),  # the dataset named, or the upload's file name
    Column("request", Text, nullable=False),  # JSON: the options as sent
    Column("progress", Text, nullable=False),  # JSON
    Column("set_id", _Id, ForeignKey("threshold_sets.id")),
    Column("result", Text),  # JSON: the report of a store=false job
    Column("error", Text),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("runner", Text, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Index("ix_tune_jobs_state", "state"),
    Index("ix_tune_jobs_created_at", "created_at"),
)


class SchemaTooNew(RuntimeError):
    """The store was upgraded by a newer labelcut than this one."""


def lock_for_writes(conn: Connection) -> None:
    """Serialise this transaction with every other writer (SQLite: BEGIN IMMEDIATE did)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})


def current_version(conn: Connection) -> int:
    """0 for an empty database, 1 for a store of the first release, else the stamped one."""
    names = set(inspect(conn).get_table_names())
    if "schema_version" in names:
        return int(conn.execute(select(schema_version.c.version)).scalar_one())
    return 1 if "threshold_sets" in names else 0


def upgrade(conn: Connection) -> tuple[int, int]:
    """Bring the schema to LATEST_VERSION inside the caller's transaction: (from, to)."""
    lock_for_writes(conn)
    found = current_version(conn)
    if found > LATEST_VERSION:
        raise SchemaTooNew(
            f"The threshold store has schema version {found}, newer than this labelcut "
            f"understands ({LATEST_VERSION}); upgrade labelcut."
        )
    if found == 0:
        metadata.create_all(conn)
        conn.execute(schema_version.insert().values(version=LATEST_VERSION))
        return 0, LATEST_VERSION
    for version in range(found, LATEST_VERSION):
        log.warning("Upgrading the threshold store's schema from version %d", version)
        _STEPS[version](conn)
    if found < LATEST_VERSION:
        # Version 1 had no version table: the rebuild created it empty.
        conn.execute(schema_version.delete())
        conn.execute(schema_version.insert().values(version=LATEST_VERSION))
    return found, LATEST_VERSION


_V1_TABLES = ("threshold_sets", "active_sets", "threshold_curves", "activations")


def _v1_to_v2(conn: Connection) -> None:
    """Rebuild the first release's tables as version 2's, keeping every id and row.

    Runs with SQLite's foreign keys off (the caller's job): the old tables are renamed,
    the new ones created from `metadata` (so a migrated store and a new one have the same
    schema), the rows copied with their model key computed, and the old tables dropped.
    """
    if conn.dialect.name != "sqlite":  # the first release wrote SQLite only
        raise RuntimeError("A version-1 threshold store can only be a SQLite file.")
    for name in _V1_TABLES:
        conn.exec_driver_sql(f"ALTER TABLE {name} RENAME TO _v1_{name}")
    metadata.create_all(conn)
    keys: dict[int, str] = {}
    for row in conn.exec_driver_sql("SELECT * FROM _v1_threshold_sets ORDER BY id").mappings():
        keys[row["id"]] = model_key(row["model_sha256"], json.loads(row["labels"]))
        conn.execute(threshold_sets.insert().values(**row, model_key=keys[row["id"]]))
    conn.exec_driver_sql(
        "INSERT INTO threshold_curves (set_id, payload) "
        "SELECT set_id, payload FROM _v1_threshold_curves"
    )
    last_activation: dict[str, int] = {}
    for row in conn.exec_driver_sql("SELECT * FROM _v1_activations ORDER BY id").mappings():
        conn.execute(activations.insert().values(**row, model_key=keys[row["set_id"]]))
        last_activation[row["model_sha256"]] = row["id"]
    for row in conn.exec_driver_sql("SELECT * FROM _v1_active_sets").mappings():
        conn.execute(
            active_sets.insert().values(
                **row,
                model_key=keys[row["set_id"]],
                activation_id=last_activation.get(row["model_sha256"], 0),
            )
        )
    for name in reversed(_V1_TABLES):
        conn.exec_driver_sql(f"DROP TABLE _v1_{name}")


def _v2_to_v3(conn: Connection) -> None:
    """Add the jobs table (a store rebuilt from version 1 already has it)."""
    tune_jobs.create(conn, checkfirst=True)


# _STEPS[v] upgrades version v to v + 1.
_STEPS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}
