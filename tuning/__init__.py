"""Exact, vectorised per-label decision thresholds from precision-recall curves.

Decision rule everywhere: a label is predicted positive iff ``score >= threshold``.
"""

from labelcut.tuning.curve_points import compact_curves, downsample_curve, operating_index
from labelcut.tuning.curves import PRCurve, precision_recall_curves
from labelcut.tuning.decision import DECISION_RULES, apply_decision_rule
from labelcut.tuning.diagnosis import diagnose
from labelcut.tuning.result import TuningResult
from labelcut.tuning.strategies import DEFAULT_STRATEGY, STRATEGIES
from labelcut.tuning.tune import apply_thresholds, tune_thresholds
from labelcut.tuning.validation import OBJECTIVES

__all__ = [
    "DECISION_RULES",
    "DEFAULT_STRATEGY",
    "OBJECTIVES",
    "STRATEGIES",
    "PRCurve",
    "TuningResult",
    "apply_decision_rule",
    "apply_thresholds",
    "compact_curves",
    "diagnose",
    "downsample_curve",
    "operating_index",
    "precision_recall_curves",
    "tune_thresholds",
]
