"""Per-label outcome of tuning, as produced by both backends."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The threshold the tuned results are compared against.
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class LabelOutcomes:
    """Counts and thresholds for L labels.

    ``thresholds`` float64 (L,); ``statuses`` list[str] (L,); int64 (L,)
    ``positives``, ``true_positives`` and ``predicted_positives`` at the
    threshold, and ``default_true_positives``, ``default_predicted_positives``
    at :data:`DEFAULT_THRESHOLD`. All counts are for ``score >= threshold``.
    """

    thresholds: np.ndarray
    statuses: list[str]
    positives: np.ndarray
    true_positives: np.ndarray
    predicted_positives: np.ndarray
    default_true_positives: np.ndarray
    default_predicted_positives: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[LabelOutcomes]) -> LabelOutcomes:
        """Join outcomes of consecutive label blocks."""
        return cls(
            thresholds=np.concatenate([p.thresholds for p in parts]),
            statuses=[status for p in parts for status in p.statuses],
            **{
                name: np.concatenate([getattr(p, name) for p in parts]).astype(np.int64)
                for name in (
                    "positives",
                    "true_positives",
                    "predicted_positives",
                    "default_true_positives",
                    "default_predicted_positives",
                )
            },
        )
