"""A label's candidate operating points: one per distinct score.

Predicting positive iff ``score >= v`` for each distinct score ``v`` gives every
point of the label's precision-recall curve, the same points as
``sklearn.metrics.precision_recall_curve`` (with ``drop_intermediate=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelcut.tuning import sortkeys


@dataclass(frozen=True)
class Candidates:
    """One label's candidate thresholds, in increasing order of score.

    ``bits`` (m,): bit patterns of the distinct scores (sorted increasing);
    ``true_positives`` and ``predicted_positives`` (m,): counts for
    ``score >= value g``, exact integers held as float64 (ready for the
    objective arithmetic); ``n_samples`` and ``positives``: the label's totals.
    """

    bits: np.ndarray
    true_positives: np.ndarray
    predicted_positives: np.ndarray
    n_samples: int
    positives: int
    float_dtype: type[np.floating]

    @property
    def values(self) -> np.ndarray:
        """(m,) float64: the distinct scores, increasing."""
        return sortkeys.bits_to_float(self.bits, self.float_dtype)

    def value(self, group: int) -> float:
        """The distinct score number ``group`` (0 is the lowest)."""
        return float(sortkeys.bits_to_float(self.bits[group : group + 1], self.float_dtype)[0])

    def counts_at(self, query: np.integer) -> tuple[int, int]:
        """(true positives, predicted positives) for ``score_bits >= query``."""
        group = int(np.searchsorted(self.bits, query, side="left"))
        if group == len(self.bits):
            return 0, 0
        return int(self.true_positives[group]), int(self.predicted_positives[group])


class Scratch:
    """Work arrays for :func:`candidates_from_sorted`, reused across the labels of a block.

    Reusing them avoids fresh page faults for every label.
    """

    def __init__(self, n_samples: int, key_dtype: np.dtype) -> None:
        self.bits = np.empty(n_samples, dtype=key_dtype)
        count_dtype = np.int32 if n_samples < 2**31 else np.int64
        self.counts = np.empty(n_samples, dtype=count_dtype)
        self.changes = np.empty(max(n_samples - 1, 0), dtype=bool)


def candidates_from_sorted(
    keys: np.ndarray, float_dtype: type[np.floating], scratch: Scratch | None = None
) -> Candidates:
    """Build a label's :class:`Candidates` from its sort keys, sorted increasing.

    ``scratch`` (optional) must have been made for ``len(keys)`` and keys' dtype.
    """
    n_samples = len(keys)
    scratch = scratch or Scratch(n_samples, keys.dtype)
    bits = np.right_shift(keys, 1, out=scratch.bits)
    np.not_equal(bits[1:], bits[:-1], out=scratch.changes)
    # ends[g]: last position of distinct value g; value g + 1 starts at ends[g] + 1.
    ends = np.flatnonzero(scratch.changes)
    cumulative = np.bitwise_and(keys, 1, out=scratch.counts, casting="same_kind")
    np.cumsum(cumulative, out=cumulative)
    positives = int(cumulative[-1])
    n_values = len(ends) + 1

    # Positives with score >= value g: all of them minus those sorted before it.
    true_positives = np.empty(n_values, dtype=np.float64)
    true_positives[0] = positives
    np.subtract(positives, cumulative.take(ends), out=true_positives[1:])
    predicted_positives = np.empty(n_values, dtype=np.float64)
    predicted_positives[0] = n_samples
    np.subtract(n_samples - 1, ends, out=predicted_positives[1:])
    value_bits = np.empty(n_values, dtype=bits.dtype)
    value_bits[0] = bits[0]
    np.take(bits[1:], ends, out=value_bits[1:])
    return Candidates(
        bits=value_bits,
        true_positives=true_positives,
        predicted_positives=predicted_positives,
        n_samples=n_samples,
        positives=positives,
        float_dtype=float_dtype,
    )
