"""Confidence thresholds for multi-class (softmax) models, from the exact risk-coverage curve.

A softmax model predicts one class per row: the argmax. With a confidence
threshold ``t`` it **answers** a row iff the row's top probability ``>= t``
(the project's one rule, ``score >= threshold``) and abstains otherwise.
Raising ``t`` answers fewer rows (coverage) and, for a calibrated model, gets
more of the answered ones right (accuracy; risk = 1 - accuracy).

The search is exact: every distinct top probability is a candidate, as on the
precision-recall curves. Objectives:

* ``coverage_at_accuracy``: the most rows answered with accuracy on them
  ``>= target``; when no threshold reaches the target the status is
  ``target_unreachable`` and the fallback threshold (default 0: answer every
  row, plain argmax) is used;
* ``accuracy_at_coverage``: the best accuracy on the answered rows while at
  least ``target`` of the rows are answered; ties go to the higher threshold.

The returned threshold is the midpoint between the lowest top probability
answered and the highest one not answered (half the lowest when every row is
answered), rounded to the probabilities' dtype, so ``>=`` reproduces the chosen
point exactly on the tuning data (the rule ``tune_thresholds`` follows).

Pure numpy. Argmax ties go to the lower class index (``np.argmax``), as in
``apply_decision_rule``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

MULTICLASS_OBJECTIVES: tuple[str, ...] = ("coverage_at_accuracy", "accuracy_at_coverage")
#: Threshold used when the target cannot be reached: answer every row (plain argmax).
DEFAULT_CONFIDENCE_FALLBACK = 0.0
MAX_CURVE_POINTS = 1000


class RiskCoverageCurve(NamedTuple):
    """Operating points of "answer iff top probability >= thresholds[i]".

    ``thresholds`` (m,) ascending distinct top probabilities; ``coverage``,
    ``accuracy`` (m + 1,) float64 and ``answered``, ``correct`` (m + 1,) int64.
    Element ``i < m`` is the point of ``thresholds[i]``; the last element is
    "nothing answered" (coverage 0, accuracy 1 by convention, like precision
    where nothing is predicted).
    """

    thresholds: np.ndarray
    coverage: np.ndarray
    accuracy: np.ndarray
    answered: np.ndarray
    correct: np.ndarray


class NotMultiClassError(ValueError):
    """Targets that are not one class per row (rows with several labels, or none).

    ``rows_with_several`` and ``rows_with_none`` count the offending rows;
    the message names the first few (rows counted from 1).
    """

    def __init__(self, message: str, rows_with_several: int, rows_with_none: int) -> None:
        super().__init__(message)
        self.rows_with_several = rows_with_several
        self.rows_with_none = rows_with_none


# --------------------------------------------------------------------------- targets


def class_indices(
    targets: Any, *, n_classes: int | None = None, class_names: Sequence[str] | None = None
) -> np.ndarray:
    """Class index per row, int64 (n,), from any of the three multi-class target forms.

    * ``(n, C)`` one-hot 0/1 (``Y``): exactly one 1 per row, else
      ``NotMultiClassError`` naming the rows with several labels or none;
    * ``(n,)`` integers (``y``) in ``[0, n_classes)`` (floats with whole values too);
    * ``(n,)`` class names (strings), mapped to their position in ``class_names``.

    ``n_classes`` (the model's output width; defaults to ``len(class_names)``)
    is checked when given. Other problems raise ``ValueError`` naming the row.
    """
    if n_classes is None and class_names is not None:
        n_classes = len(class_names)
    array = np.asarray(targets)
    if array.ndim == 2:
        return _from_one_hot(array, n_classes, class_names)
    if array.ndim != 1:
        raise ValueError(
            f"class targets must be one-hot (n, C) or one class per row (n,); got shape "
            f"{array.shape}."
        )
    if array.dtype.kind in "USO":
        return _from_names(array, class_names)
    return _from_integers(array, n_classes)


def _from_one_hot(
    array: np.ndarray, n_classes: int | None, class_names: Sequence[str] | None
) -> np.ndarray:
    if n_classes is not None and array.shape[1] != n_classes:
        raise ValueError(f"one-hot targets have {array.shape[1]} columns; expected {n_classes}.")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"one-hot targets must be 0/1 numbers; got dtype {array.dtype}.")
    bad = ~np.isin(array, (0, 1))
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"one-hot targets must be 0 or 1; row {row + 1}, column {col + 1} is "
            f"{array[row, col]!r}."
        )
    counts = (array == 1).sum(axis=1)
    several, none = np.flatnonzero(counts > 1), np.flatnonzero(counts == 0)
    if several.size or none.size:
        parts = []
        if several.size:
            row = int(several[0])
            names = _names_of(np.flatnonzero(array[row] == 1), class_names)
            parts.append(
                f"{several.size} row(s) have two or more labels (first: row {row + 1}: {names})"
            )
        if none.size:
            parts.append(f"{none.size} row(s) have no label (first: row {int(none[0]) + 1})")
        raise NotMultiClassError(
            "; ".join(parts) + ". A softmax (multi-class) model predicts exactly one class per "
            "row; data where a row can have several labels or none fits a multi-label model "
            "trained with BCEWithLogitsLoss (activation 'sigmoid').",
            rows_with_several=int(several.size),
            rows_with_none=int(none.size),
        )
    return np.argmax(array, axis=1).astype(np.int64)


def _names_of(columns: np.ndarray, class_names: Sequence[str] | None) -> str:
    shown = [class_names[c] if class_names is not None else str(c) for c in columns[:5]]
    return ", ".join(shown)


def _from_integers(array: np.ndarray, n_classes: int | None) -> np.ndarray:
    if array.dtype.kind == "b" or array.dtype.kind not in "iuf":
        raise ValueError(f"class indices must be integers; got dtype {array.dtype}.")
    if array.dtype.kind == "f":
        whole = np.isfinite(array) & (array == np.round(array))
        if not whole.all():
            row = int(np.flatnonzero(~whole)[0])
            raise ValueError(f"class indices must be whole numbers; row {row + 1} is {array[row]}.")
    indices = array.astype(np.int64)
    limit = n_classes if n_classes is not None else None
    out = (indices < 0) if limit is None else (indices < 0) | (indices >= limit)
    if out.any():
        row = int(np.flatnonzero(out)[0])
        span = "0 or more" if limit is None else f"in [0, {limit - 1}]"
        raise ValueError(f"class indices must be {span}; row {row + 1} is {indices[row]}.")
    return indices


def _from_names(array: np.ndarray, class_names: Sequence[str] | None) -> np.ndarray:
    if class_names is None:
        raise ValueError("class names need the model's class_names to map them to indices.")
    position = {name: i for i, name in enumerate(class_names)}
    values = array.tolist()  # about 0.1 s per million rows; object arrays may mix types
    found = [position.get(v, -1) if isinstance(v, str) else -1 for v in values]
    indices = np.array(found, dtype=np.int64)
    if (indices < 0).any():
        row = int(np.flatnonzero(indices < 0)[0])
        known = ", ".join(list(class_names)[:10])
        raise ValueError(
            f"row {row + 1}: class {values[row]!r} is not one of the model's classes ({known})."
        )
    return indices


# --------------------------------------------------------------------------- curve


def _check_proba(proba: Any) -> np.ndarray:
    array = np.asarray(proba)
    if array.ndim != 2 or array.shape[1] < 2 or array.shape[0] < 1:
        raise ValueError(
            f"proba must be (n, C) class probabilities with n >= 1 and C >= 2; got shape "
            f"{array.shape}."
        )
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    if not np.all(np.isfinite(array)) or array.min() < 0.0 or array.max() > 1.0:
        raise ValueError("proba must hold finite probabilities in [0, 1].")
    return array


def _top_and_correct(proba: Any, classes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    array = _check_proba(proba)
    truth = class_indices(classes, n_classes=array.shape[1])
    if truth.shape[0] != array.shape[0]:
        raise ValueError(
            f"classes has {truth.shape[0]} rows but proba has {array.shape[0]}; they must match."
        )
    predicted = np.argmax(array, axis=1)
    top = array[np.arange(array.shape[0]), predicted]
    return top, predicted == truth, truth


def risk_coverage_curve(proba: Any, classes: Any) -> RiskCoverageCurve:
    """The exact risk-coverage curve of ``proba`` (n, C) against ``classes``.

    ``classes`` is any form ``class_indices`` reads. See ``RiskCoverageCurve``.
    """
    top, correct, _ = _top_and_correct(proba, classes)
    return _curve(top, correct)


def _curve(top: np.ndarray, correct: np.ndarray) -> RiskCoverageCurve:
    values, inverse = np.unique(top, return_inverse=True)
    per_value = np.bincount(inverse, minlength=values.size)
    right_per_value = np.bincount(inverse, weights=correct, minlength=values.size)
    # Answered at values[i] = rows whose top is >= values[i]: suffix sums, plus the empty end.
    answered = np.concatenate((np.cumsum(per_value[::-1])[::-1], [0])).astype(np.int64)
    right = np.concatenate((np.cumsum(right_per_value[::-1])[::-1], [0])).round().astype(np.int64)
    n = top.shape[0]
    safe = np.where(answered == 0, 1, answered)
    return RiskCoverageCurve(
        thresholds=values,
        coverage=answered / n,
        accuracy=np.where(answered == 0, 1.0, right / safe),
        answered=answered,
        correct=right,
    )


def confidence_operating_index(curve: RiskCoverageCurve, threshold: float) -> int:
    """Index of the point of "answer iff top >= threshold" (``len(thresholds)``: none)."""
    return int(np.searchsorted(curve.thresholds.astype(np.float64), threshold, side="left"))


def downsample_risk_coverage(
    curve: RiskCoverageCurve, max_points: int = MAX_CURVE_POINTS, keep: Sequence[float] = ()
) -> RiskCoverageCurve:
    """At most ``max_points`` points (plus the kept ones) with the same semantics.

    Keeps the first point (every row answered), the end point (none) and,
    exactly, the operating point of every threshold in ``keep``.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2; got {max_points}.")
    m = len(curve.thresholds)
    if m + 1 <= max_points:
        return curve
    kept = {confidence_operating_index(curve, t) for t in keep}
    spread = np.linspace(0, m - 1, num=max(max_points - 1 - len(kept), 2)).round().astype(int)
    index = np.union1d(spread, np.array(sorted(kept | {0, m}), dtype=int))
    points = index[index < m]
    every = np.concatenate((points, [m]))
    return RiskCoverageCurve(
        thresholds=curve.thresholds[points],
        coverage=curve.coverage[every],
        accuracy=curve.accuracy[every],
        answered=curve.answered[every],
        correct=curve.correct[every],
    )


# --------------------------------------------------------------------------- tuning


def _choose(curve: RiskCoverageCurve, objective: str, target: float) -> int | None:
    m = len(curve.thresholds)
    if objective == "coverage_at_accuracy":
        # Coverage falls strictly with the index, so the first feasible point has the most.
        feasible = np.flatnonzero(curve.accuracy[:m] >= target)
        return int(feasible[0]) if feasible.size else None
    feasible_count = int(np.count_nonzero(curve.coverage[:m] >= target))  # a prefix 0..k-1
    if feasible_count == 0:
        return None
    accuracy = curve.accuracy[:feasible_count]
    return feasible_count - 1 - int(np.argmax(accuracy[::-1]))  # ties: higher threshold


def _midpoint(curve: RiskCoverageCurve, index: int, dtype: np.dtype) -> float:
    upper = float(curve.thresholds[index])
    lower = float(curve.thresholds[index - 1]) if index > 0 else 0.0
    with np.errstate(under="ignore"):
        rounded = float(np.asarray((upper + lower) / 2.0).astype(dtype))
    if rounded > upper or (index > 0 and rounded <= lower):
        return upper  # adjacent floats: the lowest answered value itself
    return rounded


def _check_objective(objective: str, target: Any) -> float:
    if objective not in MULTICLASS_OBJECTIVES:
        raise ValueError(
            f"objective must be one of {', '.join(MULTICLASS_OBJECTIVES)}; got {objective!r}."
        )
    if isinstance(target, bool) or not isinstance(target, (int, float, np.floating, np.integer)):
        raise ValueError(f"target must be a number in (0, 1] for {objective}; got {target!r}.")
    value = float(target)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"target must be in (0, 1] for {objective}; got {value}.")
    return value


@dataclass(frozen=True, eq=False)
class ConfidenceResult:
    """A tuned confidence threshold for a softmax model and what it gives on the data.

    A row is answered with its argmax class iff its top probability ``>=
    threshold``; otherwise it gets no label (abstains). ``status`` is "ok" or
    "target_unreachable" (then ``threshold`` is ``params["fallback"]``).
    ``coverage``, ``accuracy`` (on answered rows; 1 when none) and ``answered``
    describe the threshold used; ``overall_accuracy`` is the plain argmax
    accuracy on every row. Per class (C,) at the threshold: ``precision``
    (right / answered as that class; 1 when none), ``recall`` (right / rows of
    that class), ``support``, ``predicted``; ``default_precision`` and
    ``default_recall`` are the same when every row is answered. ``curve`` is
    the full exact curve.
    """

    threshold: float
    status: str
    objective: str
    params: dict[str, Any]
    n_samples: int
    coverage: float
    accuracy: float
    answered: int
    overall_accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    support: np.ndarray
    predicted: np.ndarray
    default_precision: np.ndarray
    default_recall: np.ndarray
    curve: RiskCoverageCurve

    def to_dict(
        self, label_names: Sequence[str] | None = None, max_points: int = MAX_CURVE_POINTS
    ) -> dict[str, Any]:
        """JSON-ready report; the curve is downsampled to about ``max_points`` points with
        the chosen point and the answer-every-row point kept exactly."""
        names = [str(c) for c in range(len(self.support))] if label_names is None else label_names
        if len(names) != len(self.support):
            raise ValueError(f"label_names has {len(names)} names; expected {len(self.support)}.")
        small = downsample_risk_coverage(self.curve, max_points, keep=(self.threshold, 0.0))
        per_class = [
            {
                "label": str(name),
                "precision": float(self.precision[c]),
                "recall": float(self.recall[c]),
                "support": int(self.support[c]),
                "predicted": int(self.predicted[c]),
                "at_default": {
                    "precision": float(self.default_precision[c]),
                    "recall": float(self.default_recall[c]),
                },
            }
            for c, name in enumerate(names)
        ]
        return {
            "decision_rule": "exactly_one",
            "objective": self.objective,
            "params": dict(self.params),
            "n_samples": self.n_samples,
            "status": self.status,
            "threshold": self.threshold,
            "coverage": self.coverage,
            "accuracy": self.accuracy,
            "answered": self.answered,
            "overall_accuracy": self.overall_accuracy,
            "per_class": per_class,
            "curve": {
                "thresholds": small.thresholds.astype(np.float64).tolist(),
                "coverage": small.coverage.tolist(),
                "accuracy": small.accuracy.tolist(),
                "chosen_index": confidence_operating_index(small, self.threshold),
                "default_index": 0,
            },
        }


def tune_confidence_threshold(
    proba: Any,
    classes: Any,
    objective: str = "coverage_at_accuracy",
    *,
    target: float,
    fallback: float = DEFAULT_CONFIDENCE_FALLBACK,
) -> ConfidenceResult:
    """Tune the confidence threshold of a softmax model on labelled rows.

    ``proba`` (n, C) class probabilities (the model's softmax; rows need not sum
    to 1 exactly); ``classes`` any form ``class_indices`` reads (one-hot ``Y``,
    integer ``y``; for class names call ``class_indices`` with ``class_names``
    first). ``objective`` and ``target`` as in the module docstring.
    ``fallback`` (in [0, 1]) is used when the target is unreachable.
    """
    value = _check_objective(objective, target)
    if isinstance(fallback, bool) or not 0.0 <= float(fallback) <= 1.0:
        raise ValueError(f"fallback must be a number in [0, 1]; got {fallback!r}.")
    array = _check_proba(proba)
    top, correct, truth = _top_and_correct(array, classes)
    curve = _curve(top, correct)
    index = _choose(curve, objective, value)
    if index is None:
        status, threshold = "target_unreachable", float(fallback)
    else:
        status, threshold = "ok", _midpoint(curve, index, array.dtype)
    answered_rows = top.astype(np.float64) >= threshold  # compared exactly, in float64
    predicted = np.argmax(array, axis=1)
    n_classes = array.shape[1]
    point = confidence_operating_index(curve, threshold)
    at = _per_class(predicted, truth, answered_rows, n_classes)
    default = _per_class(predicted, truth, np.ones_like(answered_rows), n_classes)
    return ConfidenceResult(
        threshold=threshold,
        status=status,
        objective=objective,
        params={"target": value, "fallback": float(fallback)},
        n_samples=int(array.shape[0]),
        coverage=float(curve.coverage[point]),
        accuracy=float(curve.accuracy[point]),
        answered=int(curve.answered[point]),
        overall_accuracy=float(correct.mean()),
        precision=at["precision"],
        recall=at["recall"],
        support=at["support"],
        predicted=at["predicted"],
        default_precision=default["precision"],
        default_recall=default["recall"],
        curve=curve,
    )


def _per_class(
    predicted: np.ndarray, truth: np.ndarray, answered: np.ndarray, n_classes: int
) -> dict[str, np.ndarray]:
    given = np.bincount(predicted[answered], minlength=n_classes)
    right = np.bincount(predicted[answered & (predicted == truth)], minlength=n_classes)
    support = np.bincount(truth, minlength=n_classes)
    return {
        "precision": np.where(given == 0, 1.0, right / np.maximum(given, 1)),
        "recall": np.where(support == 0, 0.0, right / np.maximum(support, 1)),
        "support": support.astype(np.int64),
        "predicted": given.astype(np.int64),
    }


def apply_confidence_threshold(proba: Any, threshold: float) -> np.ndarray:
    """Answer per row, int64 (n,): the argmax class where top probability ``>= threshold``,
    else -1 (abstain). Argmax ties go to the lower class index."""
    array = _check_proba(proba)
    predicted = np.argmax(array, axis=1)
    top = array[np.arange(array.shape[0]), predicted]
    return np.where(top.astype(np.float64) >= threshold, predicted, -1).astype(np.int64)
