"""np.interp for many labels in one call: each label's own breakpoints, no Python loop.

All labels' breakpoints are concatenated with the complex keys ``j + 1j * x`` (label ``j``,
breakpoint ``x``): numpy orders complex numbers lexicographically (real part, then
imaginary part), so one ``np.searchsorted`` finds every query's segment within its own
label, exactly (no offset is added to ``x``, so no precision is lost).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class StackedInterp:
    """Piecewise-linear maps, one per label, from ``(x, y)`` breakpoint pairs (``x``
    strictly increasing); constant beyond the ends, like ``np.interp``."""

    def __init__(self, breakpoints: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        sizes = np.array([len(x) for x, _ in breakpoints], dtype=np.int64)
        self.n_labels = len(sizes)
        self.x = np.concatenate([np.asarray(x, dtype=np.float64) for x, _ in breakpoints])
        self.y = np.concatenate([np.asarray(y, dtype=np.float64) for _, y in breakpoints])
        labels = np.repeat(np.arange(self.n_labels, dtype=np.float64), sizes)
        self.keys = labels + 1j * self.x
        self.start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.last = self.start + sizes - 1  # index of each label's last breakpoint
        self.x_lo, self.x_hi = self.x[self.start], self.x[self.last]

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """float64 ``(n, L)``: label ``j``'s map applied to column ``j`` of ``p``."""
        q = np.clip(np.asarray(p, dtype=np.float64), self.x_lo, self.x_hi)
        labels = np.arange(self.n_labels, dtype=np.float64)
        index = np.searchsorted(self.keys, labels + 1j * q, side="right") - 1
        # Left end of the segment: never the label's last point while it has two or more.
        left = np.minimum(index, np.maximum(self.last - 1, self.start))
        right = np.minimum(left + 1, self.last)
        x0, x1, y0, y1 = self.x[left], self.x[right], self.y[left], self.y[right]
        gap = x1 - x0
        frac = np.where(gap > 0, (q - x0) / np.where(gap > 0, gap, 1.0), 0.0)
        return y0 + np.clip(frac, 0.0, 1.0) * (y1 - y0)
