"""One call for ``POST /thresholds/{id}/adapt``: a set's calibrator and thresholds moved to
the priors of unlabelled rows (see :mod:`labelcut.tuning.label_shift` for the method)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labelcut.tuning.calibration import Calibrator
from labelcut.tuning.label_shift import (
    CurveLike,
    LabelShiftEstimate,
    estimate_priors,
    map_thresholds,
    retune_for_priors,
)


@dataclass(frozen=True)
class Adapted:
    """``calibrator``: the set's calibrator followed by the prior adjustment (serve it);
    ``thresholds`` float64 ``(L,)`` on its output (serve them); ``estimate``: EM's answer;
    ``threshold_status`` per label (``retune_for_priors``'s, or ``"mapped"``)."""

    calibrator: Calibrator
    thresholds: np.ndarray
    estimate: LabelShiftEstimate
    threshold_status: list[str]

    def report(self, label_names: Sequence[str]) -> list[dict[str, Any]]:
        """Per label, JSON-ready: old and new prevalence, EM status and iterations, the new
        threshold and how it was set."""
        e = self.estimate
        return [
            {
                "label": name,
                "prevalence_old": float(e.prior_old[j]),
                "prevalence_new": float(e.prior_new[j]),
                "em_status": e.status[j],
                "em_iterations": int(e.n_iter[j]),
                "threshold": float(self.thresholds[j]),
                "threshold_status": self.threshold_status[j],
            }
            for j, name in enumerate(label_names)
        ]


def adapt_to_unlabelled(
    calibrator: Calibrator,
    probabilities: np.ndarray,
    prior: np.ndarray,
    thresholds: np.ndarray,
    *,
    curves: Sequence[CurveLike] | None = None,
    positives: np.ndarray | None = None,
    objective: str = "f1",
    beta: float = 1.0,
    target: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> Adapted:
    """Re-estimate priors on unlabelled rows and move the set to them.

    ``calibrator``, ``prior`` ``(L,)`` and ``thresholds`` ``(L,)`` are the set's: the prior
    its calibrated probabilities reflect (the validation prevalence, or the prior of the set
    it was adapted from) and the thresholds on its served scores. ``probabilities``
    ``(n, L)``: the model's raw probabilities for the unlabelled rows (the calibrator is
    applied here). With ``curves`` and ``positives`` (the set's per-label validation curves
    on the scores its thresholds were tuned on, and positives per label) each threshold is
    re-tuned for ``objective`` under the new prior; without them the thresholds are only
    mapped, which keeps every decision as it was while the probabilities move.
    """
    served = calibrator.apply(np.asarray(probabilities))
    estimate = estimate_priors(served, prior, tol=tol, max_iter=max_iter)
    old, new = estimate.prior_old, estimate.prior_new
    if curves is None or positives is None:
        moved, status = np.asarray(thresholds, dtype=np.float64), ["mapped"] * len(old)
    else:
        retuned = retune_for_priors(
            curves, positives, thresholds, old, new, objective=objective, beta=beta, target=target
        )
        moved, status = retuned.thresholds, retuned.status
    return Adapted(
        calibrator.with_priors(old, new), map_thresholds(moved, old, new), estimate, status
    )
