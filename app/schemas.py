"""Pydantic request and response models of the HTTP API, with examples for /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Objective = Literal["f1", "fbeta", "recall_at_precision", "precision_at_recall"]

_YEAST_ROW = [0.0] * 103  # one row of the bundled yeast model's 103 standardised-able features


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    detail: str | None = None


class ModelInfo(BaseModel):
    name: str
    version: str
    sha256: str
    format: str
    device: str
    dtype: str
    input_shape: list[int]
    labels: list[str]
    feature_names: list[str] | None = None


class PredictRequest(BaseModel):
    """Rows to score. Each input has the model's input shape (a flat list for tabular models)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": [_YEAST_ROW]},
                {"inputs": [_YEAST_ROW], "thresholds": {"Class1": 0.3}, "return_logits": True},
            ]
        },
    )

    inputs: list[Any] = Field(description="Rows; each a nested list of the model's input shape.")
    thresholds: dict[str, float] | None = Field(
        default=None,
        description="Per-request override {label: threshold in [0, 1]}; other labels keep the "
        "active set's threshold. A label is predicted iff score >= threshold.",
    )
    return_logits: bool = False


class Prediction(BaseModel):
    labels: list[str] = Field(description="Labels whose score >= their threshold.")
    scores: dict[str, float] = Field(description="Sigmoid probability per label.")
    logits: dict[str, float] | None = None


class PredictResponse(BaseModel):
    model: str
    threshold_set_id: int | None = Field(
        description="The threshold set used; null when none is active and 0.5 is used."
    )
    labels: list[str]
    predictions: list[Prediction]


class DefaultPoint(BaseModel):
    threshold: float
    precision: float
    recall: float
    f1: float
    fbeta: float
    predicted_positives: int


class LabelReport(BaseModel):
    label: str
    threshold: float
    status: str = Field(
        description="ok | no_positives | no_negatives | too_few_positives | target_unreachable; "
        "every status but ok uses the fallback threshold."
    )
    precision: float
    recall: float
    f1: float
    fbeta: float
    support: int
    predicted_positives: int
    at_default: DefaultPoint


class TunedVsDefault(BaseModel):
    tuned: float
    default: float


class Summary(BaseModel):
    macro_f1: TunedVsDefault
    micro_f1: TunedVsDefault


class ThresholdSetInfo(BaseModel):
    id: int
    active: bool
    created_at: str
    objective: str
    params: dict[str, Any]
    data_sha256: str
    n_samples: int
    model_name: str
    model_sha256: str


class ThresholdSetReport(BaseModel):
    """A stored set with everything measured when it was tuned."""

    threshold_set: ThresholdSetInfo
    thresholds: dict[str, float]
    per_label: list[LabelReport]
    summary: Summary


class ActiveThresholdsResponse(BaseModel):
    threshold_set: ThresholdSetInfo | None = Field(
        description="The active set; null when none is active (0.5 for every label)."
    )
    thresholds: dict[str, float]


class HistoryItem(ThresholdSetInfo):
    summary: Summary


class HistoryResponse(BaseModel):
    items: list[HistoryItem]


class ErrorResponse(BaseModel):
    detail: Any = Field(examples=["Label column 'Class3' must hold only 0 and 1; row 7 holds 2."])


class LabelCurve(BaseModel):
    """One label's precision-recall curve (sklearn semantics), downsampled for plotting.

    Element i < m of `precision`/`recall` is the operating point of predicting
    positive iff score >= `thresholds[i]`; the last element is the end point
    (nothing predicted: precision 1, recall 0).
    """

    label: str
    threshold: float
    default_threshold: float
    precision: list[float]
    recall: list[float]
    thresholds: list[float]
    chosen_index: int = Field(description="Index of the tuned threshold's operating point.")
    default_index: int = Field(description="Index of 0.5's operating point.")


class CurvesResponse(BaseModel):
    threshold_set_id: int
    max_points: int
    curves: list[LabelCurve]
