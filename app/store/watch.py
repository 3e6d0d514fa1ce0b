"""ActiveWatcher: tells this replica when another one activated a set.

PostgreSQL: a dedicated connection LISTENs on the store's channel, so an activation's
NOTIFY (sent on commit) wakes it in milliseconds. Polling the active set's activation id
every `poll_s` is the fallback (a lost LISTEN connection, a notification missed while it
was down) and the only mechanism on SQLite, where several processes may share one file.
Each wake-up calls `on_change()`, which re-reads the pointer and installs a newer set.
The polls also keep the store's health (for /readyz) fresh while nothing else touches it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from labelcut.app.store.core import NOTIFY_CHANNEL, ThresholdStore
from labelcut.app.store.model import StoreUnavailable

log = logging.getLogger("labelcut")

POLL_S_SQLITE = 0.25
POLL_S_POSTGRES = 0.5


class ActiveWatcher:
    """A daemon thread: `on_change(activation_id)` whenever the active pointer of `key`
    has an activation id other than the last one seen."""

    def __init__(
        self,
        store: ThresholdStore,
        key: str,
        on_change: Callable[[int | None], None],
        *,
        poll_s: float | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.on_change = on_change
        self.poll_s = poll_s or (
            POLL_S_POSTGRES if store.dialect == "postgresql" else POLL_S_SQLITE
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labelcut-store-watch", daemon=True)
        self._listen = None  # psycopg.Connection while LISTENing
        self.seen: int | None = None
        self.listening = False

    def start(self, seen: int | None) -> None:
        self.seen = seen
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._close_listener()

    # --- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wait()
            try:
                current = self.store.active_activation_id(self.key)
            except StoreUnavailable:
                # The store logged it and /readyz says so. The LISTEN connection is likely
                # dead too, perhaps silently: open a new one once the database answers.
                self._close_listener()
                continue
            except Exception:  # never let the watcher die: it is how this replica converges
                log.exception("The threshold store watcher failed; retrying")
                continue
            if current != self.seen:
                try:
                    self.on_change(current)
                    self.seen = current
                except StoreUnavailable:
                    continue
                except Exception:
                    log.exception("Could not install the newly activated threshold set")

    def _wait(self) -> bool:
        """Sleep up to poll_s, or until a notification arrives; False if it could not listen."""
        if self.store.dialect != "postgresql":
            self._stop.wait(self.poll_s)
            return False
        if self._listen is None and not self._connect_listener():
            self._stop.wait(self.poll_s)
            return False
        try:
            # Returns at the first notification (of any model: the poll below tells) or
            # after poll_s.
            for _ in self._listen.notifies(timeout=self.poll_s, stop_after=1):  # type: ignore[union-attr]
                pass
            return True
        except Exception as exc:
            log.warning(
                "Lost the LISTEN connection to the threshold store (%s): %s; polling meanwhile",
                self.store.shown,
                self.store.where.scrub(
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                ),
            )
            self._close_listener()
            return False

    def _connect_listener(self) -> bool:
        import psycopg

        try:
            conn = psycopg.connect(
                self.store.where.libpq_conninfo,
                autocommit=True,
                connect_timeout=3,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                application_name="labelcut-listen",
            )
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except Exception:
            self.listening = False
            return False
        self._listen = conn
        self.listening = True
        return True

    def _close_listener(self) -> None:
        self.listening = False
        if self._listen is not None:
            with contextlib.suppress(Exception):
                self._listen.close()
            self._listen = None
