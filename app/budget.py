"""Memory budget and thread pool for tunes: the work in flight that holds uploaded data.

Every tune reserves `TUNE_COST_FACTOR` x the bytes its upload decodes to (judged from
the file's declared sizes before anything is decoded), plus `TUNE_BYTES_PER_LABEL` per
label of the model above `FREE_LABELS`, out of one budget of
`LABELCUT_MAX_DATA_MB`, and runs on its own bounded thread pool, never on AnyIO's
default pool that the rest of the app (sync routes, upload spooling) shares. A tune
that does not fit waits up to `LABELCUT_TUNE_WAIT_S` on the event loop (holding no
thread), then is answered 503 with `Retry-After`; one that could never fit is 413.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from labelcut.app.config import Settings

T = TypeVar("T")

# What a tune holds at its peak, in multiples of its decoded data: the decoded table or
# arrays, their float32 copies stacked per row, the model's scores and the tuning's sort
# buffers (measured on yeast-shaped data: 2.1-2.7x; 3 leaves a margin).
TUNE_COST_FACTOR = 3
# And per label beyond FREE_LABELS, whatever the rows: up to that many labels the tuning's
# per-label working arrays share fixed budgets (the adaptive rule's calibration units,
# tuning.adaptive.UNIT_BUDGET, at least 64 per label; the estimate's row-group sums,
# tuning.estimate.GROUP_BUDGET), beyond it each label adds its own, with its curve and
# bootstrap figures. Measured above 2x the data: 2,000 rows x 5,000 labels held 64 KB per
# label, x 20,000 labels 33 KB.
TUNE_BYTES_PER_LABEL = 64 << 10
FREE_LABELS = 2048


def tune_cost(data_bytes: int, n_labels: int = 0) -> int:
    """Bytes a tune of `data_bytes` decoded bytes and `n_labels` labels reserves."""
    wide = max(n_labels - FREE_LABELS, 0)
    return TUNE_COST_FACTOR * max(data_bytes, 0) + TUNE_BYTES_PER_LABEL * wide


class NeverFits(Exception):
    """The tune needs more than the whole budget: no amount of waiting helps (413)."""

    def __init__(self, needed: int, total: int) -> None:
        self.needed, self.total = needed, total
        super().__init__(
            f"A tune of this upload holds about {needed / 2**20:.1f} MB ({TUNE_COST_FACTOR}x "
            f"what the upload decodes to, plus {TUNE_BYTES_PER_LABEL >> 10} KB per label above "
            f"{FREE_LABELS}), "
            f"over the {total / 2**20:.1f} MB that tunes may hold (LABELCUT_MAX_DATA_MB). "
            f"The largest upload one tune takes decodes to about "
            f"{total / TUNE_COST_FACTOR / 2**20:.1f} MB, less the labels' share."
        )


class BudgetBusy(Exception):
    """The tune did not fit in what other tunes leave within the wait (503)."""

    def __init__(self, needed: int, free: int, waited: float, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"Other tunes hold the memory this one needs ({needed / 2**20:.1f} MB; "
            f"{free / 2**20:.1f} MB free of LABELCUT_MAX_DATA_MB) after waiting "
            f"{waited:.1f} s; retry in {retry_after} s."
        )


class MemoryBudget:
    """Bytes that tunes in flight may hold, reserved and released on the event loop."""

    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self.used = 0
        self._changed: asyncio.Condition | None = None  # made on first use, in the loop

    @property
    def free(self) -> int:
        return self.total - self.used

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    @asynccontextmanager
    async def reserve(self, nbytes: int, wait_s: float) -> AsyncIterator[None]:
        """Hold `nbytes` for the body of the `with`; wait up to `wait_s` for them.

        Raises NeverFits when `nbytes` exceeds the whole budget and BudgetBusy when the
        wait ends first.
        """
        if nbytes > self.total:
            raise NeverFits(nbytes, self.total)
        changed = self._condition()
        start = time.monotonic()
        async with changed:
            while self.used + nbytes > self.total:
                left = wait_s - (time.monotonic() - start)
                if left <= 0:
                    raise BudgetBusy(nbytes, self.free, wait_s, max(1, math.ceil(wait_s)))
                try:
                    await asyncio.wait_for(changed.wait(), left)
                except TimeoutError:
                    continue  # the loop's test raises BudgetBusy
            self.used += nbytes
        try:
            yield
        finally:
            async with changed:
                self.used -= nbytes
                changed.notify_all()


class TuneRunner:
    """The tunes' memory budget and their own thread pool, one per app."""

    def __init__(self, settings: Settings) -> None:
        self.budget = MemoryBudget(settings.max_data_bytes)
        self.wait_s = settings.tune_wait_s
        self.workers = settings.tune_workers
        self._executor: ThreadPoolExecutor | None = None

    @property
    def max_upload_data_bytes(self) -> int:
        """The most one upload may decode to: what fits the whole budget."""
        return self.budget.total // TUNE_COST_FACTOR

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            # Threads start on demand, so an app that never tunes never starts one.
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="labelcut-tune")
        return self._executor

    async def run(self, data_bytes: int, fn: Callable[..., T], *args: Any, n_labels: int = 0) -> T:
        """Reserve the budget for a tune of `data_bytes` decoded bytes and `n_labels` labels
        (`tune_cost`), then run `fn(*args)` on the tune pool; the reservation ends when `fn`
        returns or raises."""
        async with self.budget.reserve(tune_cost(data_bytes, n_labels), self.wait_s):
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._pool(), fn, *args)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                # A client that goes away does not stop the thread: keep the reservation
                # until the work really ends, or the budget would promise memory in use.
                with contextlib.suppress(BaseException):
                    await future
                raise

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
