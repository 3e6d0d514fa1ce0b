"""GET /drift: the active set's drift window beside what its validation data expects."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from labelcut.app.drift_monitor import DriftReport

router = APIRouter(tags=["metrics"])


@router.get(
    "/drift",
    summary="Drift per label: share predicted positive and mean score in the recent window",
    responses={503: {"description": "The model is not loaded yet."}},
)
def drift(request: Request) -> dict[str, Any]:
    """Per label, over the last `window.rows` rows /predict served under the active set
    (at most `window.size`; emptied at each activation): `positive_rate` (share of rows
    given the label by the decision used) and `mean_score` (of the served scores), the
    same figures `expected` from the set's validation data (null when the set does not
    carry them), and `drifted` (the window's rate is more than 4 binomial standard errors
    and 0.02 from the expected one; never below 100 rows). Figures are null while the
    window is empty."""
    report = request.app.state.drift.report()
    if report is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="The model is loading.")
    return drift_json(report)


def drift_json(report: DriftReport) -> dict[str, Any]:
    """The JSON of `report` (NaN written as null)."""
    window, expected = report.window, report.expected
    labels = []
    for j, label in enumerate(report.labels):
        labels.append(
            {
                "label": label,
                "positive_rate": _number(window.positive_share[j]),
                "mean_score": _number(window.mean_score[j]),
                "expected_positive_rate": (
                    None if expected is None else _number(expected.positive_share[j])
                ),
                "expected_mean_score": None
                if expected is None
                else _number(expected.mean_score[j]),
                "drifted": bool(report.drifted[j]),
            }
        )
    return {
        "threshold_set_id": report.set_id,
        "window": {"rows": window.n_rows, "size": report.size},
        "expected_rows": None if expected is None else expected.n_rows,
        "drifted": [label for label, d in zip(report.labels, report.drifted, strict=True) if d],
        "labels": labels,
    }


def _number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


__all__ = ["drift", "drift_json", "router"]
