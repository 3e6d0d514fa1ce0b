"""Progress reports and cancellation, shared by the local and the Dask engines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from labelcut.app.engine.base import Cancelled, Progress


class Tracker:
    """Counts partitions and rows of the current pass and calls `progress` after each one;
    `check_cancel` raises `Cancelled` once `cancel` is set."""

    def __init__(
        self,
        *,
        partitions: int,
        rows: int | None,
        passes: int,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
        planned: Callable[[], int] | None = None,
    ) -> None:
        self.partitions = partitions
        # The plan's bound on the passes tightens once the first pass is in (a float32
        # grid pass bounds the refinements): re-read it at every pass when given.
        self._planned = planned
        self.rows = rows
        self.passes = passes
        self.pass_index = 0
        self.partitions_done = 0
        self.rows_done = 0
        self._progress = progress
        self._cancel = cancel
        self._start = time.monotonic()

    def start_pass(self) -> None:
        """A new pass begins: its counts start at 0 (reported once, before any partition)."""
        self.check_cancel()
        self.pass_index += 1
        if self._planned is not None:
            self.passes = int(self._planned())
        # The plan's count is an upper bound; never report a pass past it.
        self.passes = max(self.passes, self.pass_index)
        self.partitions_done = 0
        self.rows_done = 0
        self._report()

    def partition_done(self, rows: int) -> None:
        self.partitions_done += 1
        self.rows_done += rows
        self._report()

    def check_cancel(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled(
                f"cancelled in pass {self.pass_index} after {self.partitions_done} of "
                f"{self.partitions} partitions"
            )

    def snapshot(self) -> Progress:
        return Progress(
            pass_index=self.pass_index,
            passes=self.passes,
            partitions_done=self.partitions_done,
            partitions=self.partitions,
            rows_done=self.rows_done,
            rows=self.rows,
            elapsed_s=time.monotonic() - self._start,
        )

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self.snapshot())
