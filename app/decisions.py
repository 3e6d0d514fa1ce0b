"""How /predict turns the model's probabilities into served scores and labels.

A `Policy` is built once per request from the active snapshot (`ActiveThresholds`) and
the request's options, on the event loop, where a bad option is a 422; the batch worker
then applies it to the request's rows, off the event loop, in one call for every request
of a pass that shares the policy (the common case: no per-request options, one cached
policy per snapshot). The rules:

- ``threshold``, ``at_least_one``, ``exactly_one``, ``top_k``: `labelcut.tuning`'s
  decision rules on the served scores;
- ``abstain``: `labelcut.tuning.abstain.apply_abstain`: the labels with
  ``score >= upper`` are decided, those with ``lower <= score < upper`` are `uncertain`;
- ``confidence`` (softmax bundles, shown to clients as ``exactly_one``): the argmax, or no
  label when the top probability is below the confidence threshold
  (`labelcut.tuning.risk_coverage.apply_confidence_threshold`).

Served scores are the model's probabilities, or the set's calibrated ones
(`Calibrator.apply`) when the active set carries a calibrator (sigmoid bundles only: a
per-label calibration of softmax outputs would no longer sum to 1).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import HTTPException, status

from labelcut import tuning
from labelcut.app.predict_schemas import MAX_THRESHOLD
from labelcut.tuning.abstain import apply_abstain
from labelcut.tuning.calibration import Calibrator
from labelcut.tuning.risk_coverage import apply_confidence_threshold

if TYPE_CHECKING:
    from labelcut.app.codecs import PredictInput
    from labelcut.app.drift_monitor import DriftMonitor
    from labelcut.app.service import ActiveThresholds

log = logging.getLogger("labelcut")

#: The softmax rule's internal name; clients see it as `exactly_one`.
CONFIDENCE = "confidence"


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """One request's decision: ``rule`` over ``(L,)`` float64 ``thresholds``.

    ``k`` for ``top_k``; ``lower`` ``(L,)`` for ``abstain`` (``lower <= thresholds``);
    ``confidence`` for the softmax rule; ``calibrator`` maps model probabilities to the
    served scores; ``drift`` and ``snapshot`` say where the served rows are counted (the
    drift window of the active set this request saw). Compared by identity: requests that
    share a policy object are decided in one call.
    """

    rule: str
    thresholds: np.ndarray
    k: int | None = None
    lower: np.ndarray | None = None
    confidence: float | None = None
    calibrator: Calibrator | None = None
    drift: DriftMonitor | None = None
    snapshot: Any = None

    @property
    def shown_rule(self) -> str:
        """The rule's name in the JSON answer."""
        return "exactly_one" if self.rule == CONFIDENCE else self.rule

    def serve(self, proba: np.ndarray) -> np.ndarray:
        """The served scores ``(n, L)`` float32 of model probabilities ``(n, L)``."""
        if self.calibrator is None:
            return proba
        return np.asarray(self.calibrator.apply(proba), dtype=np.float32)

    def decide(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(labels, uncertain)`` bool ``(n, L)`` of finite served ``scores`` ``(n, L)``;
        ``uncertain`` is None except under ``abstain``."""
        if self.rule == "threshold":
            # tuning.apply_thresholds' rule without its validation (the model's own
            # outputs, checked finite); float32 >= float64 compares in float64.
            return scores >= self.thresholds, None
        if self.rule == "abstain":
            return apply_abstain(scores, self.lower, self.thresholds)
        if self.rule == CONFIDENCE:
            answer = apply_confidence_threshold(scores, float(self.confidence or 0.0))
            flags = np.zeros(scores.shape, dtype=bool)
            answered = np.flatnonzero(answer >= 0)
            flags[answered, answer[answered]] = True
            return flags, None
        return tuning.apply_decision_rule(scores, self.thresholds, self.rule, self.k), None

    def observe(self, scores: np.ndarray, flags: np.ndarray) -> None:
        """Count served rows in the drift window of the set this request saw."""
        if self.drift is not None:
            self.drift.add(self.snapshot, scores, flags)


class PolicyCache:
    """The policy of requests without options, built once per active snapshot."""

    __slots__ = ("_drift", "_entry")

    def __init__(self, drift: DriftMonitor | None = None) -> None:
        self._drift = drift
        self._entry: tuple[Any, Policy] | None = None

    def policy_for(
        self, active: ActiveThresholds, request: PredictInput, labels: list[str]
    ) -> Policy:
        """The policy of one request seeing snapshot `active`; 422 naming a bad option."""
        plain = (
            request.thresholds is None
            and request.decision_rule is None
            and request.confidence is None
        )
        if plain:
            entry = self._entry
            if entry is not None and entry[0] is active:
                return entry[1]
            policy = build_policy(active, request, labels, self._drift)
            self._entry = (active, policy)
            return policy
        return build_policy(active, request, labels, self._drift)


def build_policy(
    active: ActiveThresholds,
    request: PredictInput,
    labels: list[str],
    drift: DriftMonitor | None = None,
) -> Policy:
    """The decision of a request with options `request` on snapshot `active`."""
    if active.activation == "softmax":
        return _softmax_policy(active, request, drift)
    if request.confidence is not None:
        _unprocessable(
            "threshold (a confidence threshold) applies only to softmax (multi-class) models; "
            "this model is multi-label (sigmoid): send thresholds as {label: value}."
        )
    thresholds = thresholds_with_override(active.thresholds, labels, request.thresholds)
    if request.decision_rule is not None:
        rule, k = request.decision_rule, request.k
    else:
        rule, k = stored_rule(active, len(labels))
    lower = None
    if rule == "abstain":
        lower = active.lower
        if lower is None or lower.shape != thresholds.shape:
            which = "none is active" if active.set is None else f"set {active.set_id} has none"
            _unprocessable(
                "decision_rule 'abstain' needs the lower thresholds of a review band, which a "
                f"set tuned with decision_rule=abstain stores; {which}."
            )
        below = np.flatnonzero(thresholds < lower)
        if len(below):
            j = int(below[0])
            _unprocessable(
                f"thresholds['{labels[j]}'] is {thresholds[j]}, below the lower threshold "
                f"{lower[j]} of its abstain band; send a value of at least that."
            )
    return Policy(rule, thresholds, k, lower, None, active.calibrator, drift, active)


def _softmax_policy(
    active: ActiveThresholds, request: PredictInput, drift: DriftMonitor | None
) -> Policy:
    if request.thresholds:
        _unprocessable(
            "thresholds (per label) do not apply to a softmax (multi-class) model: it answers "
            "the argmax; send threshold (one confidence threshold in [0, 1]) to abstain on "
            "rows whose top probability is below it."
        )
    if request.decision_rule not in (None, "exactly_one"):
        _unprocessable(
            f"decision_rule '{request.decision_rule}' does not apply to a softmax (multi-class) "
            "model: it answers exactly one class per row (exactly_one), or none when the top "
            "probability is below the confidence threshold (threshold)."
        )
    if request.confidence is not None:
        confidence = request.confidence
    elif active.confidence is not None:
        confidence = active.confidence
    else:
        confidence = 0.0  # no confidence threshold stored: always answer
    if active.calibrator is not None:
        _warn_once(active.set_id)
    return Policy(CONFIDENCE, active.thresholds, None, None, confidence, None, drift, active)


def thresholds_with_override(
    active: np.ndarray, labels: list[str], override: dict[str, float] | None
) -> np.ndarray:
    """The active thresholds with a request's per-label override applied (copy if changed)."""
    if not override:
        return active
    position = {label: i for i, label in enumerate(labels)}
    values = active.copy()
    for label, value in override.items():
        if label not in position:
            _unprocessable(f"thresholds names unknown label '{label}'; labels are {labels}.")
        check_threshold(value, f"thresholds['{label}']")
        values[position[label]] = value
    return values


def check_threshold(value: float, name: str) -> None:
    """422 unless `value` is a threshold: finite, in [0, 1], or above 1 by at most 2**-10
    ("predict nothing" when a score is 1.0)."""
    if not (math.isfinite(value) and 0.0 <= value <= MAX_THRESHOLD):
        _unprocessable(f"{name} is {value}; it must be in [0, 1].")


_warned: set[tuple[Any, ...]] = set()


def stored_rule(active: ActiveThresholds, n_labels: int) -> tuple[str, int | None]:
    """The rule stored with the active set, made safe to apply to `n_labels` labels.

    Sets stored by older releases may hold a `top_k` whose k is absurd (e.g. 2**64, which
    no JSON encoder writes as an integer) or not an integer at all: k above the number of
    labels keeps every passing label, so it is clamped to `n_labels`; `abstain` needs the
    set's lower thresholds, one per label. A rule that cannot be applied falls back to
    `threshold`, and the log says so once per set.
    """
    rule, k = active.decision_rule, active.k
    if rule == "threshold":
        return rule, None
    if rule in ("at_least_one", "exactly_one") and k is None:
        return rule, None
    if rule == "top_k" and type(k) is int and k >= 1:
        return rule, min(k, n_labels)
    lower = active.lower
    if (
        rule == "abstain"
        and k is None
        and lower is not None
        and lower.shape == (n_labels,)
        and bool((lower <= active.thresholds).all())
    ):
        return rule, None
    key = (active.set_id, rule, repr(k)[:50])
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "Threshold set %s stores decision rule %r with k=%s%s, which cannot be applied; "
            "using 'threshold'.",
            active.set_id,
            rule,
            key[2],
            " (and no valid lower thresholds)" if rule == "abstain" else "",
        )
    return "threshold", None


def _warn_once(set_id: int | None) -> None:
    key = ("softmax-calibrator", set_id)
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "Threshold set %s carries a calibrator, which a softmax model does not use "
            "(per-label calibration would break the sum to 1); serving the softmax.",
            set_id,
        )


def _unprocessable(detail: str) -> None:
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)
