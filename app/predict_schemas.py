"""The request and response models of POST /predict (the route's own, beside `schemas`).

They extend `labelcut.app.schemas`' models with what softmax bundles (issue 15: the
confidence `threshold`), the abstain band (issue 18: `decision_rule="abstain"`, the
`uncertain` labels) and calibrated sets (issue 19: `calibrated`) add.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from labelcut.app import schemas

#: Thresholds may exceed 1 by at most this much: "predict nothing" for a label whose top
#: validation score is 1.0 (the next float above 1.0; see `labelcut.tuning.cutpoints`).
THRESHOLD_SLACK = 2.0**-10
MAX_THRESHOLD = 1.0 + THRESHOLD_SLACK

PredictRule = Literal["threshold", "at_least_one", "exactly_one", "top_k", "abstain"]


class PredictRequest(schemas.PredictRequest):
    """Rows to score, with this request's optional decision settings."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": [schemas._YEAST_ROW]},
                {"inputs": [schemas._YEAST_ROW], "thresholds": {"Class1": 0.3}},
                {"inputs": [schemas._YEAST_ROW], "decision_rule": "top_k", "k": 2},
                {"inputs": [[0.0] * 64], "threshold": 0.9},
            ]
        },
    )

    decision_rule: PredictRule | None = Field(  # type: ignore[assignment]
        default=None,
        description="threshold: every label with score >= threshold; at_least_one: also the "
        "top label when none passes; exactly_one: argmax (the multi-class rule); top_k: the "
        "best k of those that pass; abstain: the confident yeses, with the labels of the "
        "set's review band in `uncertain` (needs a set tuned with the abstain rule). "
        "Default: the active set's rule, else threshold (exactly_one on a softmax model).",
    )
    threshold: float | None = Field(
        default=None,
        description="Softmax models only: the confidence threshold for this request, in "
        "[0, 1]; a row whose top probability is below it gets no label (abstains). Default: "
        "the active set's confidence threshold, else 0 (always answer).",
    )


class Prediction(BaseModel):
    labels: list[str] = Field(
        description="The labels decided by the rule: those with score >= their threshold "
        "(softmax: the argmax, or none when its probability is below the confidence threshold)."
    )
    scores: dict[str, float] = Field(
        description="Probability per label: the sigmoid (multi-label), the softmax (multi-"
        "class; sums to 1), or the set's calibrated probability (`calibrated: true`)."
    )
    logits: dict[str, float] | None = Field(
        default=None, description="The model's raw outputs (never calibrated)."
    )
    uncertain: list[str] | None = Field(
        default=None,
        description="decision_rule abstain: the labels with lower <= score < upper (review).",
    )


class PredictResponse(BaseModel):
    model: str
    threshold_set_id: int | None = Field(
        description="The threshold set used; null when none is active and 0.5 is used."
    )
    labels: list[str]
    decision_rule: PredictRule = "threshold"
    k: int | None = None
    threshold: float | None = Field(
        default=None, description="Softmax models: the confidence threshold applied."
    )
    calibrated: bool = Field(
        default=False, description="Scores are the active set's calibrated probabilities."
    )
    predictions: list[Prediction]
