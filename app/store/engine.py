"""Which database: `LABELCUT_DATABASE_URL` (or the SQLite file in the data directory),
the SQLAlchemy engine for it, and the password kept out of every message."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

DATABASE_URL_ENV = "LABELCUT_DATABASE_URL"
# A replica must fail a write fast (503) rather than hang while the database is away.
CONNECT_TIMEOUT_S = 3


@dataclass(frozen=True)
class StoreLocation:
    """Where the store is: `url` for SQLAlchemy, `shown` safe to log (password masked)."""

    url: URL
    password: str | None

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def shown(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def libpq_conninfo(self) -> str:
        """The URL psycopg connects with directly (the LISTEN connection)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def scrub(self, message: str) -> str:
        """`message` with the password (should a driver ever echo it) replaced by ***."""
        return message.replace(self.password, "***") if self.password else message


def locate(database_url: str | None, sqlite_path: Path) -> StoreLocation:
    """`postgresql://...` (or `postgres://`, `postgresql+psycopg://`), `sqlite:///path`,
    or None / "" for the SQLite file `sqlite_path` (the single-process default)."""
    if not database_url:
        return StoreLocation(URL.create("sqlite", database=str(sqlite_path)), None)
    try:
        url = make_url(database_url)
    except Exception:
        # make_url's message quotes the URL, password included: never repeat it (nor chain it).
        raise ValueError(
            f"{DATABASE_URL_ENV} is not a database URL (postgresql://user:password@host/db)."
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise ValueError(
            f"{DATABASE_URL_ENV} must be postgresql://... or sqlite:///...; got '{backend}'."
        )
    return StoreLocation(url, url.password if isinstance(url.password, str) else None)


def database_url_from(settings: Any) -> str | None:
    """`settings.database_url` (a str or SecretStr) when Settings has one, else the
    environment variable; None (the SQLite file) when neither is set or it is empty."""
    value = getattr(settings, "database_url", None)
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return value or os.environ.get(DATABASE_URL_ENV) or None


def make_engine(where: StoreLocation) -> Engine:
    if where.dialect == "sqlite":
        return _sqlite_engine(where)
    return create_engine(
        where.url,
        pool_size=5,
        max_overflow=10,
        pool_timeout=CONNECT_TIMEOUT_S,
        # After PostgreSQL restarts, pooled connections are dead: test each on checkout,
        # so the first write after the database returns succeeds instead of failing once.
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            # A partitioned network: unacknowledged writes fail after 10 s, not minutes.
            "tcp_user_timeout": 10_000,
            # No statement (nor a wait for the write lock) runs longer than this.
            "options": "-c statement_timeout=15000",
            "application_name": "labelcut",
        },
        hide_parameters=True,
    )


def _sqlite_engine(where: StoreLocation) -> Engine:
    path = where.url.database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # One connection per checkout, closed after: several processes share the file, and
    # WAL plus BEGIN IMMEDIATE serialises their writers.
    engine = create_engine(
        where.url, poolclass=NullPool, connect_args={"timeout": 30}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # The driver's own transaction handling would not BEGIN before DDL; we do it below.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=FULL")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock at BEGIN, so two never deadlock upgrading a read lock.
        write = conn.get_execution_options().get("labelcut_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
