"""Drift figures for the service's gauges: a sliding window over recent predictions.

:class:`DriftWindow` keeps the last ``size`` rows' per-label predicted-positive flags and
scores in a fixed ring, and running per-label totals, so adding a row costs O(L) and reading
the window's figures costs O(L): per label, the share of rows predicted positive and the mean
score. :func:`expected_rates` gives the same two figures on validation data at a set's
thresholds, to set beside them. :func:`drifted_labels` flags labels whose window share is
far from the expected one.

Totals of floats are kept by adding the new and subtracting the evicted score; to stop
rounding error from accumulating, they are recomputed from the ring every ``size``
evictions (O(size L) once per ``size`` rows: O(L) amortised). The window is thread-safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DriftFigures:
    """``n_rows`` rows in the window (or validation rows); float64 ``(L,)``
    ``positive_share`` (share of rows predicted positive) and ``mean_score``."""

    n_rows: int
    positive_share: np.ndarray
    mean_score: np.ndarray


def expected_rates(scores: np.ndarray, thresholds: np.ndarray) -> DriftFigures:
    """Validation figures at a set's thresholds: ``scores`` ``(n, L)`` (the scores that are
    served, e.g. calibrated), ``thresholds`` ``(L,)``; positive iff ``score >= threshold``."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    if s.ndim != 2 or len(s) == 0 or t.shape != (s.shape[1],):
        raise ValueError(
            f"scores must be (n, L) with n >= 1 and thresholds (L,), got {s.shape}, {t.shape}."
        )
    return DriftFigures(len(s), (s >= t).mean(axis=0), s.mean(axis=0))


class DriftWindow:
    """The last ``size`` rows of ``n_labels`` labels (flags and scores), with running totals."""

    def __init__(self, n_labels: int, size: int = 10_000) -> None:
        if n_labels < 1 or size < 1:
            raise ValueError("n_labels and size must be at least 1.")
        self.n_labels = int(n_labels)
        self.size = int(size)
        self._flags = np.zeros((self.size, self.n_labels), dtype=bool)
        self._scores = np.zeros((self.size, self.n_labels), dtype=np.float64)
        self._positives = np.zeros(self.n_labels, dtype=np.int64)
        self._score_sum = np.zeros(self.n_labels, dtype=np.float64)
        self._next = 0  # ring position of the next row
        self._count = 0  # rows held (<= size)
        self._evictions = 0
        self._lock = threading.Lock()

    def add(self, scores: np.ndarray, flags: np.ndarray) -> None:
        """Add rows: ``scores`` ``(m, L)`` or ``(L,)`` and their predicted-positive ``flags``
        of the same shape (the served decisions, whatever the rule). O(m L)."""
        s = np.asarray(scores, dtype=np.float64)
        f = np.asarray(flags, dtype=bool)
        if s.shape != f.shape:
            raise ValueError(f"scores {s.shape} and flags {f.shape} must have one shape.")
        if s.ndim not in (1, 2) or s.shape[-1] != self.n_labels:
            raise ValueError(
                f"scores must be (m, {self.n_labels}) or ({self.n_labels},), got {s.shape}."
            )
        s, f = s.reshape(-1, self.n_labels), f.reshape(-1, self.n_labels)
        if len(s) > self.size:  # only the newest rows can stay
            s, f = s[-self.size :], f[-self.size :]
        with self._lock:
            m = len(s)
            slots = (self._next + np.arange(m)) % self.size
            evicted = max(0, self._count + m - self.size)
            if evicted:
                # Until the ring is full it holds slots 0..count-1 and next == count, so the
                # occupied slots about to be overwritten are always the last `evicted`.
                old = slots[m - evicted :]
                self._positives -= self._flags[old].sum(axis=0)
                self._score_sum -= self._scores[old].sum(axis=0)
            self._flags[slots] = f
            self._scores[slots] = s
            self._positives += f.sum(axis=0)
            self._score_sum += s.sum(axis=0)
            self._next = int((self._next + m) % self.size)
            self._count = min(self.size, self._count + m)
            self._evictions += evicted
            if self._evictions >= self.size:  # drop the rounding error of the running sums
                self._score_sum = self._scores[: self._count].sum(axis=0)
                self._evictions = 0

    def figures(self) -> DriftFigures:
        """The window's figures, O(L); NaN shares and means while the window is empty."""
        with self._lock:
            if self._count == 0:
                nan = np.full(self.n_labels, np.nan)
                return DriftFigures(0, nan, nan.copy())
            return DriftFigures(
                self._count, self._positives / self._count, self._score_sum / self._count
            )

    def clear(self) -> None:
        """Empty the window (e.g. when the active threshold set changes)."""
        with self._lock:
            self._flags[:] = False
            self._scores[:] = 0.0
            self._positives[:] = 0
            self._score_sum[:] = 0.0
            self._next = self._count = self._evictions = 0


def drifted_labels(
    window: DriftFigures,
    expected: DriftFigures,
    *,
    z: float = 4.0,
    min_difference: float = 0.02,
    min_rows: int = 100,
) -> np.ndarray:
    """Bool ``(L,)``: labels whose window share predicted positive differs from the expected
    share by more than ``z`` binomial standard errors ``sqrt(e (1 - e) / n_window)`` and by
    more than ``min_difference`` (absolute). Nothing is flagged below ``min_rows`` rows.
    Rows of live traffic are not independent, so the test is a gauge, not a p-value."""
    if window.n_rows < min_rows:
        return np.zeros(len(expected.positive_share), dtype=bool)
    e = expected.positive_share
    # A floor on the variance keeps labels expected at exactly 0 or 1 testable.
    floor = 1.0 / max(expected.n_rows, 1)
    se = np.sqrt(np.maximum(e * (1 - e), floor * (1 - floor)) / window.n_rows)
    gap = np.abs(window.positive_share - e)
    return (gap > z * se) & (gap > min_difference)
