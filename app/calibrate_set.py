"""Calibration of a tuned multi-label set (issue 19), and what drift is measured against.

Thresholds are tuned on the raw scores, as without calibration; then a calibrator is fit
(`cross_fit_calibrate`: the served calibrator on every row, out-of-fold calibrated scores
for an honest report) and the thresholds are mapped through it
(`Calibrator.map_thresholds`). The calibrators are non-decreasing (temperature and Platt
strictly), so the mapped thresholds keep the raw-tuned decisions while `/predict` shows
calibrated probabilities (helper G's bench: tuning on cross-fitted scores loses macro-F1
more often than it wins). The stored thresholds apply to CALIBRATED scores.

`calibration_tuning=cross_fit` (`attach_cross_fitted`) is the other way the issue names:
the thresholds are tuned on the out-of-fold calibrated scores themselves, so each row
they were chosen on was calibrated by a calibrator that had not seen it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from labelcut import tuning

if TYPE_CHECKING:
    from labelcut.app.service import TunedSet
    from labelcut.tuning.cross_fit import CrossFit

#: Raw thresholds above 1 mean "predict nothing"; calibration would clip them to 1.
_PREDICT_NOTHING = 1.0


def expected_figures(scores: np.ndarray, thresholds: np.ndarray) -> dict[str, list[float]]:
    """Per label, the share of validation rows predicted and the mean served score: what
    the drift gauges of `/predict` compare live traffic with."""
    found = tuning.expected_rates(scores, thresholds)
    return {
        "positive_rate": found.positive_share.tolist(),
        "mean_score": found.mean_score.tolist(),
    }


def _stored_calibration(
    method: str,
    calibrator: tuning.Calibrator,
    targets: np.ndarray,
    served: np.ndarray,
    thresholds: np.ndarray,
) -> dict[str, Any]:
    """`params.calibration` of a set (SPEC-wave2): the calibrator, the validation prior and
    what the drift gauges expect at `thresholds` on the `served` (calibrated) scores."""
    return {
        "method": method,
        "calibrator": calibrator.to_dict(),
        "prior": np.asarray(targets, dtype=np.float64).mean(axis=0).tolist(),
        "expected": expected_figures(served, thresholds),
    }


def _mapped(calibrator: tuning.Calibrator, thresholds: np.ndarray) -> np.ndarray:
    mapped = calibrator.map_thresholds(thresholds)
    return np.where(thresholds > _PREDICT_NOTHING, thresholds, mapped)


def _map_curves(
    curves: list[dict[str, Any]] | None, calibrator: tuning.Calibrator, mapped: np.ndarray
) -> list[dict[str, Any]] | None:
    """The PR curves with their thresholds on the calibrated scale (one `apply` call for
    every label: the curves padded to one matrix)."""
    if not curves:
        return curves
    longest = max(len(curve["thresholds"]) for curve in curves)
    if longest == 0:
        return [{**curve, "threshold": float(t)} for curve, t in zip(curves, mapped, strict=True)]
    grid = np.zeros((longest, len(curves)))
    for j, curve in enumerate(curves):
        grid[: len(curve["thresholds"]), j] = np.clip(curve["thresholds"], 0.0, 1.0)
    calibrated = calibrator.apply(grid)
    return [
        {
            **curve,
            "threshold": float(mapped[j]),
            "thresholds": calibrated[: len(curve["thresholds"]), j].tolist(),
        }
        for j, curve in enumerate(curves)
    ]


def calibrate(
    tuned: TunedSet, scores: np.ndarray, targets: np.ndarray, method: str, labels: list[str]
) -> TunedSet:
    """`tuned` (thresholds tuned on raw `scores`) with a calibrator of `method` stored per
    SPEC-wave2 (`params.calibration`), its thresholds mapped to the calibrated scale, and
    the report's `calibration` block (ECE, Brier, reliability before and after)."""
    fit = tuning.cross_fit_calibrate(scores, targets, method, seed=0)
    calibrator = fit.calibrator
    raw = np.asarray(tuned.thresholds, dtype=np.float64)
    mapped = _mapped(calibrator, raw)
    served = calibrator.apply(scores)
    params = dict(tuned.params)
    params.pop("expected", None)  # the expectations move into the calibration block
    if params.get("lower_thresholds") is not None:
        lower = np.asarray(params["lower_thresholds"], dtype=np.float64)
        params["lower_thresholds"] = _mapped(calibrator, lower).tolist()
    params["calibration"] = _stored_calibration(method, calibrator, targets, served, mapped)
    block = {
        "method": method,
        "thresholds_apply_to": "calibrated scores",
        "raw_thresholds": dict(zip(labels, raw.tolist(), strict=True)),
        # Out-of-fold calibrated scores: the calibrator did not see the rows it is judged on.
        **tuning.compare_calibration(scores, fit.calibrated, targets, label_names=labels),
    }
    result = _with_mapped_thresholds(tuned.result, mapped, labels, params)
    report = _with_mapped_thresholds(tuned.report, mapped, labels, params)
    result["calibration"] = report["calibration"] = block
    return replace(
        tuned,
        params=params,
        thresholds=mapped.tolist(),
        result=result,
        report=report,
        curves=_map_curves(tuned.curves, calibrator, mapped),
    )


def attach_cross_fitted(
    tuned: TunedSet,
    fit: CrossFit,
    scores: np.ndarray,
    targets: np.ndarray,
    method: str,
    labels: list[str],
) -> TunedSet:
    """`tuned` (thresholds tuned on `fit.calibrated`, the out-of-fold calibrated scores)
    with `fit.calibrator` (fit on every row) stored per SPEC-wave2 and the report's
    `calibration` block. The thresholds are already on the calibrated scale."""
    calibrator = fit.calibrator
    thresholds = np.asarray(tuned.thresholds, dtype=np.float64)
    served = calibrator.apply(scores)
    params = dict(tuned.params)
    params.pop("expected", None)  # the expectations move into the calibration block
    params["calibration"] = _stored_calibration(method, calibrator, targets, served, thresholds)
    block = {
        "method": method,
        "thresholds_apply_to": "calibrated scores",
        "thresholds_tuned_on": "out-of-fold calibrated scores (5 folds)",
        **tuning.compare_calibration(scores, fit.calibrated, targets, label_names=labels),
    }
    result = {**tuned.result, "calibration": block}
    report = {**tuned.report, "calibration": block}
    return replace(tuned, params=params, result=result, report=report)


def _with_mapped_thresholds(
    found: dict[str, Any], mapped: np.ndarray, labels: list[str], params: dict[str, Any]
) -> dict[str, Any]:
    out = dict(found)
    if out.get("per_label"):
        out["per_label"] = [
            {**row, "threshold": float(t), "raw_threshold": row["threshold"]}
            for row, t in zip(out["per_label"], mapped, strict=True)
        ]
    if "thresholds" in out:
        out["thresholds"] = dict(zip(labels, mapped.tolist(), strict=True))
    if out.get("lower_thresholds") is not None:
        out["lower_thresholds"] = dict(zip(labels, params["lower_thresholds"], strict=True))
    return out
