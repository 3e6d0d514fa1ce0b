"""Exact, vectorised per-label decision thresholds from precision-recall curves.

Decision rule everywhere: a label is predicted positive iff ``score >= threshold``.
"""

from tuning.curve_points import compact_curves, downsample_curve, operating_index
from tuning.curves import PRCurve, precision_recall_curves
from tuning.result import TuningResult
from tuning.tune import apply_thresholds, tune_thresholds
from tuning.validation import OBJECTIVES

__all__ = [
    "OBJECTIVES",
    "PRCurve",
    "TuningResult",
    "apply_thresholds",
    "compact_curves",
    "downsample_curve",
    "operating_index",
    "precision_recall_curves",
    "tune_thresholds",
]
