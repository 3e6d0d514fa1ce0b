"""Exact, vectorised per-label decision thresholds from precision-recall curves.

Decision rule everywhere: a label is predicted positive iff ``score >= threshold``.

The public names below are the whole API; the modules behind them, in the
order one call of :func:`tune_thresholds` walks through them:
``tune`` (the pipeline), ``_checks`` (argument checks and the one parameter
object), ``_sorted`` (the one sorted pass per label), ``_search`` (a point on
a curve: one tie rule, one status ladder), ``_shared`` (the pooled threshold
and how strategies combine), ``bootstrap``, ``curves``, ``result``; beside
them ``decide`` (decision rules) and ``diagnosis``. The objectives of issue 18
(``costs``, ``micro``, ``abstain``, ``objective_bootstrap`` over ``cutpoints``),
multi-class confidence (``risk_coverage``), calibration and drift
(``calibration``, ``cross_fit``, ``reliability``, ``label_shift``, ``adapt``,
``drift``) and ``evaluate`` stand beside them; ``objectives`` routes issue 18's
objectives through :func:`tune_thresholds`, and ``estimate`` adds the
cross-fitted "what to expect on new data" figures (issue 20) to every tune.
``stats`` (issue 17) tunes from mergeable sufficient statistics (counts per distinct
score or per grid bin) built from chunks of rows: the same thresholds without all the rows
in one process.
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
from labelcut.tuning.abstain import apply_abstain, tune_abstain
from labelcut.tuning.adapt import adapt_to_unlabelled
from labelcut.tuning.calibration import Calibrator, fit_calibrator
from labelcut.tuning.costs import cost_vector, tune_costs
from labelcut.tuning.cross_fit import cross_fit_calibrate
from labelcut.tuning.curves import (
    PRCurve,
    compact_curves,
    downsample_curve,
    operating_index,
    precision_recall_curves,
)
from labelcut.tuning.decide import apply_decision_rule, apply_thresholds
from labelcut.tuning.diagnosis import diagnose
from labelcut.tuning.drift import DriftWindow, drifted_labels, expected_rates
from labelcut.tuning.evaluate import evaluate_thresholds
from labelcut.tuning.label_shift import estimate_priors
from labelcut.tuning.micro import tune_micro_fbeta
from labelcut.tuning.reliability import calibration_report, compare_calibration
from labelcut.tuning.result import TuningResult
from labelcut.tuning.risk_coverage import (
    MULTICLASS_OBJECTIVES,
    ConfidenceResult,
    NotMultiClassError,
    apply_confidence_threshold,
    class_indices,
    risk_coverage_curve,
    tune_confidence_threshold,
)
from labelcut.tuning.stats import (
    ScoreStats,
    StatsPass,
    StatsTuning,
    merge_stats,
    plan_tuning,
    tune_from_stats,
    tune_statistics,
)
from labelcut.tuning.tune import tune_thresholds

__all__ = [
    "DECISION_RULES",
    "DEFAULT_STRATEGY",
    "MULTICLASS_OBJECTIVES",
    "OBJECTIVES",
    "SHRINKAGE_POSITIVES",
    "STRATEGIES",
    "TUNE_PARAMETERS",
    "Calibrator",
    "ConfidenceResult",
    "DriftWindow",
    "NotMultiClassError",
    "PRCurve",
    "Parameter",
    "ScoreStats",
    "StatsPass",
    "StatsTuning",
    "TuningResult",
    "adapt_to_unlabelled",
    "apply_abstain",
    "apply_confidence_threshold",
    "apply_decision_rule",
    "apply_thresholds",
    "calibration_report",
    "class_indices",
    "compact_curves",
    "compare_calibration",
    "cost_vector",
    "cross_fit_calibrate",
    "diagnose",
    "downsample_curve",
    "drifted_labels",
    "estimate_priors",
    "evaluate_thresholds",
    "expected_rates",
    "fit_calibrator",
    "merge_stats",
    "operating_index",
    "parameter",
    "parameter_fields",
    "parameter_table_markdown",
    "plan_tuning",
    "precision_recall_curves",
    "risk_coverage_curve",
    "tune_abstain",
    "tune_confidence_threshold",
    "tune_costs",
    "tune_from_stats",
    "tune_micro_fbeta",
    "tune_statistics",
    "tune_thresholds",
]
