"""Label shift without labels: new priors by EM, adjusted probabilities, moved thresholds.

Assumptions (Saerens, Latinne & Decaestecker 2002, "Adjusting the outputs of a classifier
to new a priori probabilities"), per label ``j`` on its own (binary EM, labels independent):

- *label shift*: the prevalence ``pi_j`` changes but ``p(x | y_j)`` does not;
- the probabilities are *calibrated* for the old prior ``pi_j`` (the prevalence of the data
  the calibrator was fit on, i.e. the validation prevalence), so calibrate first.

With ``r1 = pi_new / pi`` and ``r0 = (1 - pi_new) / (1 - pi)`` the posterior under the new
prior is ``p' = r1 p / (r1 p + r0 (1 - p))``, i.e. ``logit p' = logit p + logit pi_new -
logit pi``. EM starts at ``pi_new = pi`` and repeats ``pi_new <- mean_i p'_i`` until it moves
by less than ``tol`` (or ``max_iter`` steps).

Thresholds. The adjustment is increasing in ``p``, so ``p >= t`` iff ``p' >= adjust(t)``:
:func:`map_thresholds` gives the threshold on adjusted probabilities that keeps *the same
decisions* as ``t`` on the old ones. That alone follows the numbers, not the world: the
F1-optimal cut moves when the prevalence moves. :func:`retune_for_priors` re-tunes it with
the validation curve reweighted to the new prior (positives weighted ``r1``, negatives
``r0``; under label shift this is the new world's expected confusion matrix, with no new
labels), then :func:`map_thresholds` moves it to the adjusted scale. Serving is then
``calibrator.with_priors(pi, pi_new)`` (the adjusted probabilities) with those thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from labelcut.tuning.calibration import to_logits, to_probabilities

PRIOR_FLOOR = 1e-6  # EM priors are kept in [PRIOR_FLOOR, 1 - PRIOR_FLOOR]


class CurveLike(Protocol):
    """A precision-recall curve with ``sklearn.metrics.precision_recall_curve`` semantics."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


def _priors(prior: np.ndarray, n_labels: int, name: str) -> np.ndarray:
    array = np.asarray(prior, dtype=np.float64)
    if array.shape != (n_labels,) or not np.isfinite(array).all():
        raise ValueError(f"{name} must be {n_labels} finite numbers, one per label.")
    if (array < 0).any() or (array > 1).any():
        raise ValueError(f"{name} must lie in [0, 1].")
    return array


def adjust_probabilities(
    probabilities: np.ndarray, prior_old: np.ndarray, prior_new: np.ndarray
) -> np.ndarray:
    """Posteriors float64 ``(n, L)`` under ``prior_new`` from calibrated ones under
    ``prior_old``; labels whose priors are not both in (0, 1) are left as they are."""
    p = np.asarray(probabilities, dtype=np.float64)
    old = _priors(prior_old, p.shape[-1], "prior_old")
    new = _priors(prior_new, p.shape[-1], "prior_new")
    ok = (old > 0) & (old < 1) & (new > 0) & (new < 1)
    out = p.copy()
    delta = to_logits(new[ok]) - to_logits(old[ok])
    out[..., ok] = to_probabilities(to_logits(p[..., ok]) + delta)
    # Exact 0 and 1 stay exact (they carry no evidence the prior could move).
    out[..., ok] = np.where((p[..., ok] == 0) | (p[..., ok] == 1), p[..., ok], out[..., ok])
    return out


def map_thresholds(
    thresholds: np.ndarray, prior_old: np.ndarray, prior_new: np.ndarray
) -> np.ndarray:
    """Thresholds ``(L,)`` on adjusted probabilities that make the same decisions as
    ``thresholds`` on the old ones: ``adjust(t)`` (the adjustment is increasing)."""
    t = np.asarray(thresholds, dtype=np.float64)
    return adjust_probabilities(t[None, :], prior_old, prior_new)[0]


@dataclass(frozen=True)
class LabelShiftEstimate:
    """EM's answer. float64 ``(L,)`` ``prior_old`` and ``prior_new``; ``adjusted`` float64
    ``(n, L)``; int64 ``n_iter`` and bool ``converged`` ``(L,)``; ``status`` per label:
    ``"ok"``, ``"not_converged"`` or ``"degenerate_prior"`` (old prior 0 or 1: unchanged)."""

    prior_old: np.ndarray
    prior_new: np.ndarray
    adjusted: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    status: list[str]


def estimate_priors(
    probabilities: np.ndarray,
    prior_old: np.ndarray,
    *,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> LabelShiftEstimate:
    """New priors of unlabelled rows by EM, one binary EM per label, all labels at once.

    ``probabilities`` ``(n, L)``: calibrated under ``prior_old`` ``(L,)``. Each iteration is
    O(n L); a label stops when its prior moves by less than ``tol``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probabilities must be a non-empty 2-D array (n, L), got {p.shape}.")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must be finite numbers in [0, 1].")
    if not tol > 0 or int(max_iter) < 1:
        raise ValueError("tol must be positive and max_iter at least 1.")
    old = _priors(prior_old, p.shape[1], "prior_old")
    usable = (old > 0) & (old < 1)
    prior = old.copy()
    active = usable.copy()
    n_iter = np.zeros(p.shape[1], dtype=np.int64)
    converged = ~usable
    logits = to_logits(p)  # once: each step only shifts them by logit(prior) - logit(old)
    for _ in range(int(max_iter)):
        if not active.any():
            break
        cols = np.flatnonzero(active)
        shift = to_logits(prior[cols]) - to_logits(old[cols])
        updated = to_probabilities(logits[:, cols] + shift).mean(axis=0)
        updated = np.clip(updated, PRIOR_FLOOR, 1 - PRIOR_FLOOR)
        done = np.abs(updated - prior[cols]) < tol
        prior[cols] = updated
        n_iter[cols] += 1
        converged[cols[done]] = True
        active[cols[done]] = False
    status = [
        "degenerate_prior" if not u else ("ok" if c else "not_converged")
        for u, c in zip(usable, converged, strict=True)
    ]
    return LabelShiftEstimate(
        old, prior, adjust_probabilities(p, old, prior), n_iter, converged, status
    )


@dataclass(frozen=True)
class RetunedThresholds:
    """``thresholds`` float64 ``(L,)`` on the *old* (unadjusted) score scale, optimal for
    the objective under the new prior; ``status`` per label: ``"ok"``, ``"kept"`` (no
    positive operating point or priors not usable: the old threshold kept) or
    ``"target_unreachable"`` (the old threshold kept)."""

    thresholds: np.ndarray
    status: list[str]


def _retune_one(
    curve: CurveLike, positives: float, r1: float, r0: float,
    objective: str, beta: float, target: float | None,
) -> int | None:  # fmt: skip
    precision = np.asarray(curve.precision, dtype=np.float64)[:-1]  # drop "nothing predicted"
    recall = np.asarray(curve.recall, dtype=np.float64)[:-1]
    tp = recall * positives
    with np.errstate(divide="ignore", invalid="ignore"):
        fp = np.where(precision > 0, tp / precision - tp, np.inf)
    tp_w, fn_w, fp_w = r1 * tp, r1 * (positives - tp), r0 * fp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision_w = np.where(tp > 0, tp_w / (tp_w + fp_w), 0.0)
    if objective in ("f1", "fbeta"):
        b2 = 1.0 if objective == "f1" else beta * beta
        with np.errstate(invalid="ignore"):
            score = np.where(tp > 0, (1 + b2) * tp_w / ((1 + b2) * tp_w + b2 * fn_w + fp_w), 0.0)
        if not (score > 0).any():
            return None
        best = score.max()
        return int(np.flatnonzero(score == best)[-1])  # ties: the higher threshold
    assert target is not None
    if objective == "recall_at_precision":
        ok = precision_w >= target
        if not ok.any():
            return -1
        key = np.where(ok, recall, -np.inf)
    else:  # precision_at_recall
        ok = recall >= target
        if not ok.any():
            return -1
        key = np.where(ok, precision_w, -np.inf)
    return int(np.flatnonzero(key == key.max())[-1])


def retune_for_priors(
    curves: Sequence[CurveLike],
    positives: np.ndarray,
    thresholds_old: np.ndarray,
    prior_old: np.ndarray,
    prior_new: np.ndarray,
    *,
    objective: str = "f1",
    beta: float = 1.0,
    target: float | None = None,
) -> RetunedThresholds:
    """Thresholds re-tuned for the new priors from the validation curves, without labels.

    ``curves``: one precision-recall curve per label (sklearn semantics, as
    ``labelcut.tuning.precision_recall_curves`` gives; from the scores the thresholds were
    tuned on); ``positives`` ``(L,)`` each label's validation positives (the curve's
    support). Each operating point's counts are rebuilt (``TP = recall * P``, ``FP = TP /
    precision - TP``), reweighted (positives ``r1``, negatives ``r0``) and the objective
    (``f1``, ``fbeta``, ``recall_at_precision``, ``precision_at_recall``: as in
    ``tune_thresholds``) is maximised; ties go to the higher threshold. The threshold
    returned is the curve's score at the chosen point (so ``score >= threshold``
    reproduces it exactly, on a full or a downsampled curve). Recall does not depend on
    the prior, precision does. Use :func:`map_thresholds` to serve on adjusted scores.
    """
    if objective not in ("f1", "fbeta", "recall_at_precision", "precision_at_recall"):
        raise ValueError(f"objective {objective!r} is not one of the tuning objectives.")
    if objective == "fbeta" and not beta > 0:
        raise ValueError("beta must be positive.")
    if objective in ("recall_at_precision", "precision_at_recall") and (
        target is None or not 0 < target <= 1
    ):
        raise ValueError(f"objective {objective!r} needs a target in (0, 1].")
    n_labels = len(curves)
    old = _priors(prior_old, n_labels, "prior_old")
    new = _priors(prior_new, n_labels, "prior_new")
    support = np.asarray(positives, dtype=np.float64)
    kept = np.asarray(thresholds_old, dtype=np.float64).copy()
    if support.shape != (n_labels,) or kept.shape != (n_labels,):
        raise ValueError(f"positives and thresholds_old must have shape ({n_labels},).")
    status = []
    for j, curve in enumerate(curves):
        if not (0 < old[j] < 1 and 0 < new[j] < 1 and support[j] > 0):
            status.append("kept")
            continue
        r1, r0 = new[j] / old[j], (1 - new[j]) / (1 - old[j])
        index = _retune_one(curve, support[j], r1, r0, objective, beta, target)
        if index is None or index < 0:
            status.append("kept" if index is None else "target_unreachable")
            continue
        kept[j] = float(np.asarray(curve.thresholds, dtype=np.float64)[index])
        status.append("ok")
    return RetunedThresholds(kept, status)
