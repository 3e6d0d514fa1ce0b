"""``decision_rule="abstain"``: a confident-yes threshold, a confident-no threshold, and a
review band between them, per label.

For each label, on its validation curve (:mod:`tuning.cutpoints`):

- ``upper``: rows with ``score >= upper`` are a confident yes. The lowest
  such cut (the most recall) whose precision ``TP / PP`` is >= ``target``.
- ``lower``: rows with ``score < lower`` are a confident no. The highest such
  cut (the most rows decided) whose negative predictive value
  ``TN / (rows below)`` is >= ``npv_target``, among cuts at or below
  ``upper``: a row is never both, and when the two targets alone would
  overlap (``lower > upper``), ``lower`` is clipped to the highest cut at or
  below ``upper`` that still meets ``npv_target`` (``clipped`` says so), so
  both promises hold on the validation data.
- rows with ``lower <= score < upper`` are "uncertain": sent to review.

Precision and NPV are computed as scikit-learn computes precision (one float64
division), so a target holds here iff it holds on sklearn's curve.

``wilson_confidence`` (optional, e.g. 0.9): a side qualifies only when the one-sided
Wilson lower bound of its precision (NPV) at that confidence meets the
target, instead of the observed share. A yes side of 2 rows out of 2 then no
longer "meets" a 0.9 precision target: the band widens where the validation
data is thin, which is where the observed-share rule fails on new data
(bench/quality_objectives.py).

Status, the first that applies: "no_positives", "no_negatives",
"too_few_positives" (fewer than ``min_positives``): the label cannot be
tuned, so every row goes to review (``lower`` 0, ``upper`` above every
score); "target_unreachable": no cut reaches ``target`` (nothing is a
confident yes: ``upper`` above every score); "npv_target_unreachable": no cut
at or below ``upper`` reaches ``npv_target`` (nothing is a confident no:
``lower`` 0); else "ok". A missing side widens the band instead of guessing at
0.5, since sending a row to review is the safe answer of this rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from labelcut.tuning.cutpoints import (
    LabelCuts,
    as_float_array,
    as_target_array,
    cut_threshold,
    iter_label_cuts,
    untunable_status,
)


@dataclass(frozen=True)
class AbstainResult:
    """Per-label abstain bands and what they achieve on the validation data.

    (L,) float64 ``lower``/``upper`` (``lower <= upper``); ``status`` list[str];
    int64 ``yes``, ``no``, ``uncertain`` (row counts), ``yes_true_positives``,
    ``no_true_negatives``; float64 ``review_share`` (uncertain / rows),
    ``coverage`` (1 - review_share), ``precision`` (of the yes side, 1 when
    empty), ``npv`` (of the no side, 1 when empty), ``recall`` (yes-side true
    positives / positives, 0 without positives); bool ``clipped``.
    """

    lower: np.ndarray
    upper: np.ndarray
    status: list[str]
    yes: np.ndarray
    no: np.ndarray
    uncertain: np.ndarray
    yes_true_positives: np.ndarray
    no_true_negatives: np.ndarray
    support: np.ndarray
    clipped: np.ndarray
    n_samples: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def review_share(self) -> np.ndarray:
        return self.uncertain / self.n_samples

    @property
    def coverage(self) -> np.ndarray:
        return 1.0 - self.review_share

    @property
    def precision(self) -> np.ndarray:
        return np.where(self.yes > 0, self.yes_true_positives / np.maximum(self.yes, 1), 1.0)

    @property
    def npv(self) -> np.ndarray:
        return np.where(self.no > 0, self.no_true_negatives / np.maximum(self.no, 1), 1.0)

    @property
    def recall(self) -> np.ndarray:
        return np.where(
            self.support > 0, self.yes_true_positives / np.maximum(self.support, 1), 0.0
        )

    def to_dict(self, label_names: Sequence[str] | None = None) -> dict[str, Any]:
        names = list(label_names) if label_names else [str(j) for j in range(len(self.status))]
        precision, npv, recall = self.precision, self.npv, self.recall
        share = self.review_share
        return {
            "decision_rule": "abstain",
            "params": dict(self.params),
            "n_samples": self.n_samples,
            "thresholds": {names[j]: float(t) for j, t in enumerate(self.upper)},
            "lower_thresholds": {names[j]: float(t) for j, t in enumerate(self.lower)},
            "per_label": [
                {
                    "label": names[j],
                    "lower": float(self.lower[j]),
                    "upper": float(self.upper[j]),
                    "status": self.status[j],
                    "review_share": float(share[j]),
                    "coverage": float(1.0 - share[j]),
                    "precision": float(precision[j]),
                    "npv": float(npv[j]),
                    "recall": float(recall[j]),
                    "yes": int(self.yes[j]),
                    "no": int(self.no[j]),
                    "uncertain": int(self.uncertain[j]),
                    "clipped": bool(self.clipped[j]),
                }
                for j in range(len(names))
            ],
            "summary": {
                "review_share": float(self.uncertain.sum() / (self.n_samples * len(names))),
                "mean_review_share": float(share.mean()),
            },
        }


def wilson_lower(hits: np.ndarray, rows: np.ndarray, z: float | None) -> np.ndarray:
    """``hits / rows`` (rows >= 1), or its one-sided Wilson lower bound when ``z`` is given.

    Without ``z`` it is one float64 division, as sklearn computes precision.
    """
    share = hits / rows
    if z is None:
        return share
    z2 = z * z
    spread = z * np.sqrt(share * (1.0 - share) / rows + z2 / (4.0 * rows * rows))
    return (share + z2 / (2.0 * rows) - spread) / (1.0 + z2 / rows)


def _upper_cut(cuts: LabelCuts, target: float, z: float | None) -> int | None:
    """Lowest cut (with at least one row predicted) of precision >= target, or None."""
    tp, pp = cuts.true_positives[:-1], cuts.predicted_positives[:-1]
    meets = np.flatnonzero(wilson_lower(tp, pp, z) >= target)
    return int(meets[0]) if len(meets) else None


def _lower_cut(
    cuts: LabelCuts, npv_target: float, highest: int, z: float | None
) -> tuple[int | None, bool]:
    """Highest cut ``1 <= i <= highest`` whose rows below (``score < values[i]``) have
    NPV >= npv_target, or None; and whether a higher cut would have met it (clipped)."""
    below = cuts.n_samples - cuts.predicted_positives  # rows under cut i, (m + 1,)
    negatives_below = below - (cuts.positives - cuts.true_positives)
    with np.errstate(divide="ignore", invalid="ignore"):
        npv = wilson_lower(negatives_below, np.maximum(below, 1), z)
        meets = (below > 0) & (npv >= npv_target)
    indices = np.flatnonzero(meets)
    allowed = indices[indices <= highest]
    clipped = bool(len(indices)) and int(indices[-1]) > highest
    return (int(allowed[-1]) if len(allowed) else None), clipped


def tune_abstain(
    scores: Any,
    targets: Any,
    target: float,
    npv_target: float,
    *,
    min_positives: int = 1,
    wilson_confidence: float | None = None,
) -> AbstainResult:
    """Per-label ``(lower, upper)`` abstain thresholds (module docstring).

    ``scores`` (n, L) in [0, 1] (numpy or torch, any float dtype), ``targets``
    (n, L) 0/1; ``target`` and ``npv_target`` in (0, 1]. Raises ``ValueError``
    on bad input.
    """
    score_array = as_float_array(scores)
    truth = as_target_array(targets, score_array.shape)
    for name, value in (("target", target), ("npv_target", npv_target)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number in (0, 1].")
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise ValueError(f"{name} must be a number in (0, 1], got {value!r}.")
    if isinstance(min_positives, bool) or not isinstance(min_positives, int) or min_positives < 1:
        raise ValueError("min_positives must be an integer >= 1.")
    if wilson_confidence is not None and not (
        isinstance(wilson_confidence, (int, float)) and 0.5 <= wilson_confidence < 1.0
    ):
        raise ValueError("wilson_confidence must be None or a number in [0.5, 1).")
    z = None if wilson_confidence is None else NormalDist().inv_cdf(float(wilson_confidence))
    n_samples, n_labels = score_array.shape
    lower, upper = np.empty(n_labels), np.empty(n_labels)
    counts = np.zeros((5, n_labels), dtype=np.int64)  # yes, no, yes tp, no tn, support
    clipped = np.zeros(n_labels, dtype=bool)
    statuses = []
    for j, cuts in enumerate(iter_label_cuts(score_array, truth)):
        status = untunable_status(cuts, min_positives)
        hi, lo = cuts.nothing, None
        if status is None:
            found = _upper_cut(cuts, target, z)
            if found is None:
                status = "target_unreachable"
            else:
                hi = found
            lo, clipped[j] = _lower_cut(cuts, npv_target, hi, z)
            if lo is None and status is None:
                status = "npv_target_unreachable"
        statuses.append(status or "ok")
        upper[j] = cut_threshold(cuts, hi, score_array.dtype)
        lower[j] = 0.0 if lo is None else cut_threshold(cuts, lo, score_array.dtype)
        lo_index = 0 if lo is None else lo
        counts[0, j] = cuts.predicted_positives[hi]
        counts[1, j] = cuts.n_samples - cuts.predicted_positives[lo_index]
        counts[2, j] = cuts.true_positives[hi]
        counts[3, j] = counts[1, j] - (cuts.positives - cuts.true_positives[lo_index])
        counts[4, j] = cuts.positives
    return AbstainResult(
        lower=lower,
        upper=upper,
        status=statuses,
        yes=counts[0],
        no=counts[1],
        uncertain=n_samples - counts[0] - counts[1],
        yes_true_positives=counts[2],
        no_true_negatives=counts[3],
        support=counts[4],
        clipped=clipped,
        n_samples=n_samples,
        params={
            "target": target,
            "npv_target": npv_target,
            "min_positives": min_positives,
            "wilson_confidence": wilson_confidence,
        },
    )


def apply_abstain(scores: Any, lower: Any, upper: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(yes, uncertain)`` bool (n, L) masks: ``score >= upper`` and ``lower <= score < upper``.

    Compared in float64, as ``apply_thresholds``. ``lower``/``upper``: (L,) with
    ``lower <= upper``; the rest (``score < lower``) is a confident no.
    """
    score_array = as_float_array(scores).astype(np.float64)
    n_labels = score_array.shape[1]
    low = np.asarray(lower, dtype=np.float64).reshape(-1)
    high = np.asarray(upper, dtype=np.float64).reshape(-1)
    if low.shape != (n_labels,) or high.shape != (n_labels,):
        raise ValueError(f"lower and upper must hold one threshold per label ({n_labels}).")
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError("lower and upper thresholds must be finite.")
    bad = np.flatnonzero(low > high)
    if len(bad):
        raise ValueError(f"lower exceeds upper for label {int(bad[0])}.")
    yes = score_array >= high
    uncertain = (score_array >= low) & ~yes
    return yes, uncertain
