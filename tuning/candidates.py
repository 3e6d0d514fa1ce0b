"""A label's candidate operating points: one per distinct score.

Predicting positive iff ``score >= v`` for each distinct score ``v`` gives every
point of the label's precision-recall curve, the same points as
``sklearn.metrics.precision_recall_curve`` (with ``drop_intermediate=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuning import sortkeys


@dataclass(frozen=True)
class Candidates:
    """One label's candidate thresholds, in increasing order of score.

    ``bits`` (m,): bit patterns of the distinct scores (sorted increasing);
    ``values`` (m,) float64: the distinct scores; ``true_positives`` and
    ``predicted_positives`` (m,) int64: counts for ``score >= values[g]``;
    ``n_samples`` and ``positives``: the label's totals.
    """

    bits: np.ndarray
    values: np.ndarray
    true_positives: np.ndarray
    predicted_positives: np.ndarray
    n_samples: int
    positives: int

    def counts_at(self, query: np.ndarray) -> tuple[int, int]:
        """(true positives, predicted positives) for ``score_bits >= query``."""
        group = int(np.searchsorted(self.bits, query, side="left"))
        if group == len(self.bits):
            return 0, 0
        return int(self.true_positives[group]), int(self.predicted_positives[group])


def candidates_from_sorted(keys: np.ndarray, float_dtype: type[np.floating]) -> Candidates:
    """Build a label's :class:`Candidates` from its keys sorted increasing."""
    bits = keys >> 1
    starts = np.flatnonzero(bits[1:] != bits[:-1])
    starts += 1
    starts = np.concatenate(([0], starts))
    positives_per_value = np.add.reduceat(keys & 1, starts).astype(np.int64)
    # Positives with score >= each value: a cumulative sum from the top down.
    true_positives = np.cumsum(positives_per_value[::-1])[::-1]
    n_samples = len(keys)
    value_bits = bits[starts]
    return Candidates(
        bits=value_bits,
        values=sortkeys.bits_to_float(value_bits, float_dtype),
        true_positives=true_positives,
        predicted_positives=n_samples - starts,
        n_samples=n_samples,
        positives=int(true_positives[0]),
    )
