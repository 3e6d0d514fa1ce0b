"""The drift window of the active threshold set: what /predict served lately, per label.

One `labelcut.tuning.drift.DriftWindow` of the last LABELCUT_DRIFT_WINDOW rows (default
10,000) holds the served scores and the flags of the decision actually used. It belongs
to one active snapshot: when an activation installs another, the window is emptied, and
rows decided under the previous snapshot (still in flight) are dropped.

Feeding is cheap and off the event loop: the batch worker hands each pass's rows to
`add` just before it answers the pass's requests; `add` only queues the arrays, and they
are folded into the window once `FLUSH_ROWS` rows are pending, or when the window is read
(`/metrics`, `/drift`), so the per-call cost of the window is paid once per a few
hundred rows.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from labelcut.tuning.drift import DriftFigures, DriftWindow, drifted_labels

log = logging.getLogger("labelcut")

DEFAULT_WINDOW_ROWS = 10_000
WINDOW_ENV = "LABELCUT_DRIFT_WINDOW"
#: Rows queued before they are folded into the window.
FLUSH_ROWS = 512
#: The window's ring costs 9 bytes per row and label (a float64 score and a flag): rows
#: are capped so that it stays within this, whatever the number of labels.
MAX_WINDOW_BYTES = 256 << 20


def window_rows_from_env() -> int:
    """LABELCUT_DRIFT_WINDOW as a row count >= 1 (default 10,000); ValueError if not one."""
    text = os.environ.get(WINDOW_ENV, "").strip()
    if not text:
        return DEFAULT_WINDOW_ROWS
    try:
        rows = int(text)
    except ValueError:
        rows = 0
    if rows < 1:
        raise ValueError(f"{WINDOW_ENV} is {text!r}; it must be a whole number of rows >= 1.")
    return rows


@dataclass(frozen=True)
class DriftReport:
    """The window beside what the active set expects, per label (model label order).

    ``window``: the window's figures (NaN while empty); ``expected``: the set's figures
    from its validation data, None when the set does not carry them (no set, or a set
    stored before they were); ``drifted`` bool ``(L,)``; ``size``: the window's capacity.
    """

    set_id: int | None
    labels: list[str]
    size: int
    window: DriftFigures
    expected: DriftFigures | None
    drifted: np.ndarray


class DriftMonitor:
    """The active set's drift window. `active` returns the current snapshot
    (`ActiveThresholds`) or None while the model is not loaded; `labels` its labels."""

    def __init__(
        self,
        active: Callable[[], Any],
        labels: Callable[[], list[str] | None],
        size: int | None = None,
    ) -> None:
        self._active = active
        self._labels = labels
        self.requested_size = window_rows_from_env() if size is None else int(size)
        self._lock = threading.Lock()
        self._window: DriftWindow | None = None
        self._snapshot: Any = None
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0

    def add(self, snapshot: Any, scores: np.ndarray, flags: np.ndarray) -> None:
        """Count rows served under `snapshot`: ``scores`` ``(m, L)`` and ``flags`` ``(m, L)``.

        Rows of a snapshot that is no longer the active one are dropped."""
        with self._lock:
            if not self._follow(self._active()) or snapshot is not self._snapshot:
                return
            self._pending.append((scores, flags))
            self._pending_rows += len(scores)
            if self._pending_rows >= FLUSH_ROWS:
                self._flush()

    def report(self) -> DriftReport | None:
        """The window and the expectations of the active set; None before the model loads."""
        active = self._active()
        labels = self._labels()
        with self._lock:
            if labels is None or not self._follow(active):
                return None
            self._flush()
            assert self._window is not None
            window = self._window.figures()
            size = self._window.size
        expected = None
        drifted = np.zeros(len(labels), dtype=bool)
        rate, mean = active.expected_positive_rate, active.expected_mean_score
        if rate is not None and rate.shape == (len(labels),):
            if mean is None or mean.shape != rate.shape:
                mean = np.full(len(labels), np.nan)
            n_rows = active.set.n_samples if active.set is not None else 0
            expected = DriftFigures(int(n_rows), rate, mean)
            drifted = drifted_labels(window, expected)
        return DriftReport(active.set_id, list(labels), size, window, expected, drifted)

    def _follow(self, active: Any) -> bool:
        """Make the window the one of `active` (emptied when it changed); False if none."""
        if active is None:
            return False
        if self._window is None:
            n_labels = len(active.thresholds)
            size = min(self.requested_size, max(1, MAX_WINDOW_BYTES // (9 * n_labels)))
            if size < self.requested_size:
                log.warning(
                    "The drift window holds %d rows, not %d: %d labels at 9 bytes each per "
                    "row stay within %d MB.",
                    size,
                    self.requested_size,
                    n_labels,
                    MAX_WINDOW_BYTES >> 20,
                )
            self._window = DriftWindow(n_labels, size=size)
            self._snapshot = active
        elif active is not self._snapshot:
            self._window.clear()
            self._pending.clear()
            self._pending_rows = 0
            self._snapshot = active
        return True

    def _flush(self) -> None:
        if not self._pending:
            return
        assert self._window is not None
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if len(pending) == 1:
            scores, flags = pending[0]
        else:
            scores = np.concatenate([s for s, _ in pending])
            flags = np.concatenate([f for _, f in pending])
        self._window.add(scores, flags)
