"""Results: each label's counts at its threshold, and the TuningResult built from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from labelcut.tuning._checks import DEFAULT_THRESHOLD
from labelcut.tuning.diagnosis import rename_labels

if TYPE_CHECKING:
    from labelcut.tuning.curves import PRCurve


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
        """Join outcomes of consecutive labels or label blocks."""
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


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
    """``numerator / denominator`` as float64, ``empty`` where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, empty, numerator / safe)


def f1_of_counts(tp: Any, pp: Any, positives: Any) -> np.ndarray:
    """F1 = 2 TP / (predicted positives + positives) from (broadcastable) counts, float64,
    0 where nothing is predicted or positive. The one F1 of counts the package uses."""
    return _ratio(2.0 * np.asarray(tp, dtype=np.float64), np.add(pp, positives), 0.0)


def label_metrics(
    true_positives: np.ndarray, predicted_positives: np.ndarray, positives: np.ndarray, beta: float
) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and F-beta (float64 arrays) from exact counts.

    Precision is 1 where nothing is predicted positive (sklearn's curve end
    point); recall, F1 and F-beta are 0 where their denominator is 0.
    """
    beta2 = beta * beta
    return {
        "precision": _ratio(true_positives, predicted_positives, 1.0),
        "recall": _ratio(true_positives, positives, 0.0),
        "f1": f1_of_counts(true_positives, predicted_positives, positives),
        "fbeta": _ratio(
            (1.0 + beta2) * true_positives, beta2 * positives + predicted_positives, 0.0
        ),
    }


def micro_f1(true_positives: np.ndarray, predicted_positives: np.ndarray, positives: np.ndarray):
    """F1 of the counts pooled over labels, 0 when nothing is positive or predicted."""
    denominator = int(predicted_positives.sum()) + int(positives.sum())
    return 0.0 if denominator == 0 else 2.0 * int(true_positives.sum()) / denominator


@dataclass(frozen=True, eq=False)
class TuningResult:
    """Per-label thresholds and metrics from :func:`tuning.tune_thresholds`.

    A label is predicted positive iff ``score >= thresholds[j]``. Arrays are
    (L,): ``thresholds``, ``precision``, ``recall``, ``f1``, ``fbeta`` float64
    and ``support`` (positives), ``predicted_positives`` int64 at the chosen
    thresholds; ``default_*`` are the same at threshold 0.5. ``status[j]`` is
    "ok" or why the fallback threshold was used. ``macro_f1`` is the mean of
    the per-label F1, ``micro_f1`` the F1 of the pooled counts.

    ``strategy`` is the strategy asked for; ``label_strategy[j]`` where label
    j's threshold came from ("per_label", "shrunk", "global", "fallback");
    ``global_threshold`` the pooled optimum (None when it could not be tuned).
    ``threshold_interval`` and ``f1_interval`` are (L, 2) bootstrap intervals
    and ``unstable`` (L,) bool, all None without a bootstrap; ``diagnosis`` is
    :func:`tuning.diagnose` of the targets. ``curves`` (with
    ``tune_thresholds(..., return_curves=True)``, else None) holds each label's
    compact :class:`PRCurve` with its threshold's and 0.5's points kept.

    Issue 18: ``lower_thresholds`` (L,) float64 under ``decision_rule="abstain"``
    (``thresholds`` are then the upper ones); ``objective_report`` holds what
    the objective adds to :meth:`to_dict`: ``per_label`` (L dicts merged into
    each label's entry), ``summary`` (merged into the summary) and ``top``
    (top-level keys). ``estimate`` (issue 20, :mod:`tuning.estimate`) holds the
    cross-fitted figures: ``macro_f1``/``micro_f1`` dicts with ``expected`` and
    ``expected_interval``, per label ``expected_f1`` and ``expected_f1_reason``.
    """

    thresholds: np.ndarray
    status: list[str]
    objective: str
    params: dict[str, Any]
    n_samples: int
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    fbeta: np.ndarray
    support: np.ndarray
    predicted_positives: np.ndarray
    default_precision: np.ndarray
    default_recall: np.ndarray
    default_f1: np.ndarray
    default_fbeta: np.ndarray
    default_predicted_positives: np.ndarray
    macro_f1: float
    micro_f1: float
    default_macro_f1: float
    default_micro_f1: float
    strategy: str = "per_label"
    label_strategy: list[str] | None = None
    global_threshold: float | None = None
    threshold_interval: np.ndarray | None = None
    f1_interval: np.ndarray | None = None
    unstable: np.ndarray | None = None
    diagnosis: dict[str, Any] | None = None
    curves: list[PRCurve] | None = None
    lower_thresholds: np.ndarray | None = None
    objective_report: dict[str, Any] | None = None
    estimate: dict[str, Any] | None = None

    @classmethod
    def from_outcomes(
        cls,
        outcomes: LabelOutcomes,
        objective: str,
        params: dict[str, Any],
        n_samples: int,
        **extra: Any,
    ) -> TuningResult:
        """Derive every metric from the per-label counts."""
        beta = params["beta"]
        tuned = label_metrics(
            outcomes.true_positives, outcomes.predicted_positives, outcomes.positives, beta
        )
        default = label_metrics(
            outcomes.default_true_positives,
            outcomes.default_predicted_positives,
            outcomes.positives,
            beta,
        )
        return cls(
            thresholds=outcomes.thresholds.astype(np.float64),
            status=list(outcomes.statuses),
            objective=objective,
            params=dict(params),
            n_samples=int(n_samples),
            support=outcomes.positives.astype(np.int64),
            predicted_positives=outcomes.predicted_positives.astype(np.int64),
            default_predicted_positives=outcomes.default_predicted_positives.astype(np.int64),
            **tuned,
            **{f"default_{name}": values for name, values in default.items()},
            macro_f1=float(tuned["f1"].mean()),
            micro_f1=micro_f1(
                outcomes.true_positives, outcomes.predicted_positives, outcomes.positives
            ),
            default_macro_f1=float(default["f1"].mean()),
            default_micro_f1=micro_f1(
                outcomes.default_true_positives,
                outcomes.default_predicted_positives,
                outcomes.positives,
            ),
            **extra,
        )

    def _label_names(self, label_names: Sequence[str] | None) -> list[str]:
        n_labels = len(self.thresholds)
        if label_names is None:
            return [str(j) for j in range(n_labels)]
        names = [str(name) for name in label_names]
        if len(names) != n_labels:
            raise ValueError(
                f"label_names must have one name per label ({n_labels}), but it has {len(names)}."
            )
        if len(set(names)) != len(names):
            raise ValueError("label_names must be unique, but some names repeat.")
        return names

    def to_dict(self, label_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready summary (plain Python types), labelled "0".."L-1" by default.

        Shape: ``objective``, ``params``, ``n_samples``, ``thresholds`` (name ->
        threshold), ``per_label`` (list of per-label dicts with ``at_default``)
        and ``summary`` (macro and micro F1, tuned vs default); also ``strategy``,
        ``global_threshold`` and ``diagnosis``, and per label ``strategy``,
        ``threshold_interval``, ``f1_interval`` ([low, high] or null) and
        ``unstable`` (bool or null).
        """
        names = self._label_names(label_names)
        per_label = []
        for j, name in enumerate(names):
            per_label.append(
                {
                    "label": name,
                    "threshold": float(self.thresholds[j]),
                    "status": self.status[j],
                    "precision": float(self.precision[j]),
                    "recall": float(self.recall[j]),
                    "f1": float(self.f1[j]),
                    "fbeta": float(self.fbeta[j]),
                    "support": int(self.support[j]),
                    "predicted_positives": int(self.predicted_positives[j]),
                    "at_default": {
                        "threshold": DEFAULT_THRESHOLD,
                        "precision": float(self.default_precision[j]),
                        "recall": float(self.default_recall[j]),
                        "f1": float(self.default_f1[j]),
                        "fbeta": float(self.default_fbeta[j]),
                        "predicted_positives": int(self.default_predicted_positives[j]),
                    },
                    "strategy": self._label_source(j),
                    "threshold_interval": _pair(self.threshold_interval, j),
                    "f1_interval": _pair(self.f1_interval, j),
                    "unstable": None if self.unstable is None else bool(self.unstable[j]),
                }
            )
        params = {
            "beta": float(self.params["beta"]),
            "target": None if self.params["target"] is None else float(self.params["target"]),
            "min_positives": int(self.params["min_positives"]),
            "fallback": float(self.params["fallback"]),
        }
        params.update({key: value for key, value in self.params.items() if key not in params})
        found = {
            "objective": self.objective,
            "strategy": self.strategy,
            "params": params,
            "n_samples": self.n_samples,
            "thresholds": {name: float(t) for name, t in zip(names, self.thresholds, strict=True)},
            "per_label": per_label,
            "summary": {
                "macro_f1": {"tuned": self.macro_f1, "default": self.default_macro_f1},
                "micro_f1": {"tuned": self.micro_f1, "default": self.default_micro_f1},
            },
            "global_threshold": self.global_threshold,
            "diagnosis": None if self.diagnosis is None else rename_labels(self.diagnosis, names),
        }
        self._add_reports(found, names)
        return found

    def _add_reports(self, found: dict[str, Any], names: list[str]) -> None:
        """Merge the objective's report, the abstain thresholds and the estimate into ``found``."""
        report = self.objective_report or {}
        for entry, extra in zip(found["per_label"], report.get("per_label", []), strict=False):
            entry.update(extra)
        found["summary"].update(report.get("summary", {}))
        found.update(report.get("top", {}))
        if self.lower_thresholds is not None:
            found["decision_rule"] = "abstain"
            found["lower_thresholds"] = {
                name: float(t) for name, t in zip(names, self.lower_thresholds, strict=True)
            }
        if self.estimate is not None:
            for key in ("macro_f1", "micro_f1"):
                found["summary"][key].update(self.estimate[key])
            found["summary"]["estimate"] = self.estimate["method"]
            none = [None] * len(found["per_label"])  # no estimate: no cross-fitted figure
            for j, entry in enumerate(found["per_label"]):
                entry["expected_f1"] = self.estimate["expected_f1"][j]
                entry["expected_f1_reason"] = self.estimate["expected_f1_reason"][j]
                entry["cross_fitted_f1"] = self.estimate.get("cross_fitted_f1", none)[j]

    def _label_source(self, j: int) -> str:
        if self.label_strategy is not None:
            return self.label_strategy[j]
        return "per_label" if self.status[j] == "ok" else "fallback"


def _pair(intervals: np.ndarray | None, j: int) -> list[float] | None:
    return None if intervals is None else [float(intervals[j, 0]), float(intervals[j, 1])]
