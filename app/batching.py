"""Dynamic batching: concurrent /predict requests share one forward pass.

The stages, in order:

- **submit** (event loop): a request's rows, already validated, join a FIFO
  queue with a future to answer.
- **gather** (worker thread): take requests from the head of the queue while
  their rows fit in ``max_batch_size``. A request with more rows than that is
  never split: it runs alone, and the model chunks it by its own batch size.
  When the last pass served a single request (light traffic), a new request is
  dispatched at once. When it coalesced several (traffic is concurrent), the
  worker waits for the batch to fill: until it is full, or the oldest request
  has waited ``max_wait``; past that, it keeps waiting only while requests are
  still arriving (the newest, or the end of the last pass, less than the larger
  of ``max_wait`` and a quarter of the recent pass time ago) and for at most half
  the recent pass time after it became free (see ``fill_deadline``). That
  extension is what fills a heavy model's passes: the requests that queued
  during a long pass have waited past ``max_wait``, and sending them at once,
  just before the clients of that pass come back, makes the batches settle
  into two halves. After a short pass it is short too.
- **forward** (worker thread): one ``predict_proba`` call over the
  concatenated rows (and one ``predict_logits`` call if any request asked for
  logits). The event loop stays free meanwhile, so health checks answer.
- **decide** (worker thread): each request's served scores and labels from its
  own ``Policy`` (``labelcut.app.decisions``: the snapshot of the active set it saw,
  with its options: calibration, thresholds, rule), or from plain ``thresholds``;
  requests that share a policy (or a thresholds array) are decided in one call.
- **split** (worker thread): one slice per request, in order; the number of
  output rows must equal the number of input rows.
- **observe** (worker thread, just before delivering): the served rows and their labels
  go to the policy's drift window (``labelcut.app.drift_monitor``; queued, cheap).
- **deliver** (event loop): a single callback per pass resolves every future.

If a pass over several requests raises, each request is retried alone, so the
error reaches only the request that caused it. ``close()`` refuses new requests,
answers every queued one, then stops the worker.

One ``Batcher`` serves one loaded model, so one worker thread per device.
``max_batch_size=1`` turns batching off: every request gets its own pass.
On CPU the worker runs its passes with ``threads`` intra-op threads (by
default one less than the cores): a forward pass that spreads over every core
stalls at each of its barriers whenever the event loop takes a core back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from labelcut.app.decisions import Policy
from labelcut.models import LoadedModel

log = logging.getLogger("labelcut")

#: Called after every forward pass with (rows, requests, seconds); runs on the worker thread.
BatchObserver = Callable[[int, int, float], None]

#: While traffic is concurrent and requests keep arriving, a free worker waits at most
#: this fraction of the recent forward-pass time for its batch to fill (beyond the
#: ``max_wait`` each request is promised): the wait costs at most half a pass.
FILL_FRACTION = 0.5
#: ... and keeps waiting while the newest request arrived less than this fraction of the
#: pass time ago (or ``max_wait``, if longer): the answered clients take a few ms to return,
#: more while the event loop shares a core with other work (at a tenth, a loaded 2-core
#: machine let a 30 M-parameter MLP's passes split into two groups again).
GAP_FRACTION = 0.25
#: Weight of the newest pass in the running mean of the forward-pass time.
_PASS_TIME_WEIGHT = 0.2


def fill_deadline(
    oldest_arrival: float,
    newest_arrival: float,
    free_since: float,
    max_wait: float,
    pass_seconds: float,
) -> float:
    """When a worker free since ``free_since`` stops waiting for its batch to fill.

    Never before ``max_wait`` after the oldest queued request arrived (what each request
    is promised). Past that, only while requests are still arriving: less than
    ``gap = max(max_wait, GAP_FRACTION * pass_seconds)`` since the newest arrival or since
    the worker became free, whichever is later; and at most ``FILL_FRACTION *
    pass_seconds`` after the worker became free. After a long pass the clients it just
    answered are about to come back, and a short wait for them saves a half-empty pass;
    after a short pass the extension is short too, so the event loop never idles while a
    whole batch waits to be full. Times in seconds on one clock (time.monotonic()).
    """
    promised = oldest_arrival + max_wait
    gap = max(max_wait, GAP_FRACTION * pass_seconds)
    extended = min(free_since + FILL_FRACTION * pass_seconds, max(newest_arrival, free_since) + gap)
    return max(promised, extended)


@dataclass(frozen=True)
class BatchStats:
    """Totals since the batcher started: forward passes and the rows and requests they ran."""

    passes: int
    rows: int
    requests: int

    @property
    def mean_rows_per_pass(self) -> float:
        return self.rows / self.passes if self.passes else 0.0


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new requests."""


@dataclass(frozen=True)
class BatchOutput:
    """One request's share of a forward pass: ``(n, L)`` arrays.

    ``proba`` (the served scores: the policy's, e.g. calibrated, else the model's
    probabilities) and ``logits`` (raw; None unless asked for) are float32;
    ``decisions`` is bool: the policy's labels, or ``proba >= thresholds`` (None when
    neither was given); ``uncertain`` bool, the abstain rule's review band, else None.
    ``nonfinite_row``: the first of this request's rows whose outputs (probabilities, or
    logits when asked for) are not all finite, None when all are; found for the whole
    pass at once, off the event loop.
    """

    proba: np.ndarray
    logits: np.ndarray | None
    decisions: np.ndarray | None
    nonfinite_row: int | None = None
    uncertain: np.ndarray | None = None


@dataclass(eq=False)
class _Job:
    rows: np.ndarray
    thresholds: np.ndarray | None
    want_logits: bool
    future: asyncio.Future[BatchOutput]
    policy: Policy | None = None
    arrived: float = field(default_factory=time.monotonic)

    @property
    def decider(self) -> object:
        """What decides this job's labels; jobs sharing it are decided in one call."""
        return self.thresholds if self.policy is None else self.policy


class Batcher:
    """Coalesces concurrent requests for one model into forward passes on a worker thread.

    ``model``: a callable returning the loaded model, read at each pass (the
    model loads after the batcher starts). ``max_batch_size``: rows per pass
    (>= 1; 1 turns batching off). ``max_wait``: seconds a request may wait for
    others to join its pass (see the module docstring for when it applies).
    ``threads``: torch intra-op threads for the passes (None: leave torch's own).
    """

    def __init__(
        self,
        model: Callable[[], LoadedModel],
        *,
        max_batch_size: int,
        max_wait: float,
        observer: BatchObserver | None = None,
        threads: int | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1; got {max_batch_size}.")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0 seconds; got {max_wait}.")
        self._model = model
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait) if max_batch_size > 1 else 0.0
        self._observer = observer
        self._threads = threads
        self._queue: deque[_Job] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition(threading.Lock())
        self._closing = False
        self._concurrent = False  # the last pass served more than one request
        self._pass_seconds = 0.0  # running mean of the forward-pass time
        self._passes = self._rows = self._requests = 0  # written by the worker only
        self._thread = threading.Thread(target=self._work, name="labelcut-batcher", daemon=True)
        self._thread.start()

    # --- event loop side -------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Requests waiting for a forward pass (not counting the pass in progress)."""
        return len(self._queue)

    @property
    def stats(self) -> BatchStats:
        """Passes, rows and requests run so far (a consistent-enough read: ints only)."""
        return BatchStats(self._passes, self._rows, self._requests)

    async def submit(
        self,
        rows: np.ndarray,
        *,
        thresholds: np.ndarray | None = None,
        policy: Policy | None = None,
        want_logits: bool = False,
    ) -> BatchOutput:
        """Queue validated rows ``(n, *input_shape)`` and wait for their share of a pass.

        ``thresholds``: ``(L,)`` float64 to decide labels with (positive iff
        ``score >= threshold``); pass the same array object for requests that
        share a threshold set, so that they are decided in one call. ``policy``
        (instead): the request's ``Policy``, shared likewise.
        Raises ``BatcherClosed`` once ``close()`` has begun, and whatever the
        model raised on these rows.
        """
        loop = asyncio.get_running_loop()
        job = _Job(rows, thresholds, want_logits, loop.create_future(), policy)
        with self._cond:
            if self._closing:
                raise BatcherClosed("The service is shutting down; retry on another instance.")
            was_empty = not self._queue
            self._queue.append(job)
            self._queued_rows += len(rows)
            # Wake the worker only when it can act: it sleeps on an empty queue, or
            # waits for a batch to fill.
            if was_empty or self._queued_rows >= self.max_batch_size:
                self._cond.notify()
        return await job.future

    async def close(self, timeout: float = 60.0) -> None:
        """Refuse new requests, answer every queued one, then stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            log.warning("The batch worker did not finish within %.0f s of shutdown.", timeout)

    # --- worker thread ---------------------------------------------------------------

    def _work(self) -> None:
        previous = torch.get_num_threads()
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        try:
            while (jobs := self._gather()) is not None:
                try:
                    self._run(jobs)
                except BaseException as exc:  # pragma: no cover - _run answers its own errors
                    log.exception("The batch worker failed")
                    _deliver([(job.future, exc) for job in jobs])
        finally:
            if self._threads is not None:
                torch.set_num_threads(previous)

    def _gather(self) -> list[_Job] | None:
        """The next batch, FIFO, or None once closing and drained."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            if self._concurrent and self.max_wait > 0:
                self._wait_to_fill()
            jobs = [self._queue.popleft()]
            rows = len(jobs[0].rows)
            while self._queue and rows + len(self._queue[0].rows) <= self.max_batch_size:
                job = self._queue.popleft()
                rows += len(job.rows)
                jobs.append(job)
            self._queued_rows -= rows
            self._concurrent = len(jobs) > 1
            return [job for job in jobs if not job.future.cancelled()]

    def _wait_to_fill(self) -> None:
        """Wait (holding nothing but the condition) while the batch fills; see fill_deadline.

        Arrivals do not wake the worker (``submit`` notifies only when a batch is full):
        it sleeps until the deadline it knows of, then looks again at the newest arrival.
        """
        free_since = time.monotonic()
        while self._queued_rows < self.max_batch_size and not self._closing:
            now = time.monotonic()
            until = fill_deadline(
                self._queue[0].arrived,
                self._queue[-1].arrived,
                free_since,
                self.max_wait,
                self._pass_seconds,
            )
            if until <= now:
                return
            self._cond.wait(until - now)

    def _run(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        model = self._model()
        x = jobs[0].rows if len(jobs) == 1 else np.concatenate([job.rows for job in jobs])
        start = time.perf_counter()
        try:
            proba = model.predict_proba(x)
            logits = model.predict_logits(x) if any(job.want_logits for job in jobs) else None
            if len(proba) != len(x) or (logits is not None and len(logits) != len(x)):
                raise RuntimeError(
                    f"the model returned {len(proba)} rows for a batch of {len(x)} rows."
                )
            seconds = time.perf_counter() - start
            # Finite inputs near float32's limits can overflow inside the model.
            bad = ~np.isfinite(proba).all(axis=1)
            decided, groups = _decide(jobs, proba, bad)
        except Exception as exc:
            if len(jobs) > 1:
                # Find the request that fails: the others must not pay for it.
                for job in jobs:
                    self._run([job])
                return
            _deliver([(jobs[0].future, exc)])
            return
        self._passes += 1
        self._rows += len(x)
        self._requests += len(jobs)
        weight = _PASS_TIME_WEIGHT if self._passes > 1 else 1.0
        self._pass_seconds += weight * (seconds - self._pass_seconds)
        if self._observer is not None:
            self._observer(len(x), len(jobs), seconds)
        proba_bad = bad
        if logits is not None:
            bad = bad | ~np.isfinite(logits).all(axis=1)
        any_bad = bool(bad.any())
        answers: list[tuple[asyncio.Future[BatchOutput], BatchOutput | BaseException]] = []
        refused = np.zeros(len(x), dtype=bool) if any_bad else None
        offset = 0
        for job, (scores, flags, uncertain) in zip(jobs, decided, strict=True):
            stop = offset + len(job.rows)
            part = None if logits is None or not job.want_logits else logits[offset:stop]
            nonfinite = None
            if any_bad:
                # Logits of rows that did not ask for them do not count.
                mine = bad[offset:stop] if job.want_logits else proba_bad[offset:stop]
                nonfinite = int(np.argmax(mine)) if mine.any() else None
                if nonfinite is not None and refused is not None:
                    refused[offset:stop] = True  # answered 422: nothing of it was served
            answers.append((job.future, BatchOutput(scores, part, flags, nonfinite, uncertain)))
            offset = stop
        # Counted before the answers go out, so that a client that has its answer finds
        # its rows in /metrics (`add` only queues them: the window's work is amortised).
        _observe(groups, refused)
        _deliver(answers)


#: One job's (served scores, labels, uncertain) ``(n, L)`` each (labels None without a
#: decider, uncertain None but under abstain).
_Decided = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]
#: A run of jobs decided together: (policy, first row, stop row, scores, labels).
_Group = tuple[Policy, int, int, np.ndarray, np.ndarray]


def _decide(
    jobs: list[_Job], proba: np.ndarray, bad: np.ndarray
) -> tuple[list[_Decided], list[_Group]]:
    """Each job's served scores and decisions, one call per run of jobs sharing a decider
    (the whole pass when every job shares a snapshot); and the policies' runs, to observe.

    ``bad`` ``(rows,)``: rows whose probabilities are not all finite. Their requests are
    refused (422) by the route; meanwhile they are decided on uniform scores, so that a
    rule's own checks never fail the pass.
    """
    decided: list[_Decided] = []
    groups: list[_Group] = []
    start = 0
    i = 0
    while i < len(jobs):
        decider = jobs[i].decider
        stop = start
        j = i
        while j < len(jobs) and jobs[j].decider is decider:
            stop += len(jobs[j].rows)
            j += 1
        part = proba[start:stop]
        uncertain: np.ndarray | None = None
        if decider is None:
            scores, flags = part, None
        elif isinstance(decider, Policy):
            if bad[start:stop].any():
                part = np.where(bad[start:stop, None], np.float32(1 / part.shape[1]), part)
            scores = decider.serve(part)
            flags, uncertain = decider.decide(scores)
            if decider.drift is not None:
                groups.append((decider, start, stop, scores, flags))
        else:
            # The rule of tuning.apply_thresholds (positive iff score >= threshold), without
            # its input validation: these are the model's own outputs, and a non-finite one
            # must reach its request's error check rather than fail the whole pass.
            scores, flags = part, part >= decider
        at = 0
        for job in jobs[i:j]:
            n = len(job.rows)
            decided.append(
                (
                    scores[at : at + n],
                    None if flags is None else flags[at : at + n],
                    None if uncertain is None else uncertain[at : at + n],
                )
            )
            at += n
        start, i = stop, j
    return decided, groups


def _observe(groups: list[_Group], refused: np.ndarray | None) -> None:
    """Hand the served rows to their policies' drift windows (never fails the worker)."""
    for policy, start, stop, scores, flags in groups:
        try:
            if refused is not None and refused[start:stop].any():
                keep = ~refused[start:stop]
                scores, flags = scores[keep], flags[keep]
            if len(scores):
                policy.observe(scores, flags)
        except Exception:  # pragma: no cover - a bug in the window must not stop serving
            log.exception("Could not count a pass in the drift window")


def _deliver(answers: list[tuple[asyncio.Future, object]]) -> None:
    """Resolve futures from the worker thread: one loop callback per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, object]]] = {}
    for future, value in answers:
        by_loop.setdefault(future.get_loop(), []).append((future, value))
    for loop, items in by_loop.items():
        # A closed loop raises RuntimeError: nobody is waiting for these answers any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[asyncio.Future, object]]) -> None:
    for future, value in items:
        if future.done():
            continue
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)
