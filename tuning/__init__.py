"""Exact, vectorised per-label decision thresholds from precision-recall curves.

Decision rule everywhere: a label is predicted positive iff ``score >= threshold``.

The public names below are the whole API; the modules behind them, in the
order one call of :func:`tune_thresholds` walks through them:
``tune`` (the pipeline), ``_checks`` (argument checks and the one parameter
object), ``_sorted`` (the one sorted pass per label), ``_search`` (a point on
a curve: one tie rule, one status ladder), ``_shared`` (the pooled threshold
and how strategies combine), ``bootstrap``, ``curves``, ``result``; beside
them ``decide`` (decision rules) and ``diagnosis``.
"""

from labelcut.tuning._checks import (
    DECISION_RULES,
    DEFAULT_STRATEGY,
    OBJECTIVES,
    SHRINKAGE_POSITIVES,
    STRATEGIES,
    TUNE_PARAMETERS,
    Parameter,
    parameter,
    parameter_fields,
    parameter_table_markdown,
)
from labelcut.tuning.curves import (
    PRCurve,
    compact_curves,
    downsample_curve,
    operating_index,
    precision_recall_curves,
)
from labelcut.tuning.decide import apply_decision_rule, apply_thresholds
from labelcut.tuning.diagnosis import diagnose
from labelcut.tuning.result import TuningResult
from labelcut.tuning.tune import tune_thresholds

__all__ = [
    "DECISION_RULES",
    "DEFAULT_STRATEGY",
    "OBJECTIVES",
    "SHRINKAGE_POSITIVES",
    "STRATEGIES",
    "TUNE_PARAMETERS",
    "PRCurve",
    "Parameter",
    "TuningResult",
    "apply_decision_rule",
    "apply_thresholds",
    "compact_curves",
    "diagnose",
    "downsample_curve",
    "operating_index",
    "parameter",
    "parameter_fields",
    "parameter_table_markdown",
    "precision_recall_curves",
    "tune_thresholds",
]
