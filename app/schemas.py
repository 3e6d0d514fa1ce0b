"""Pydantic request and response models of the HTTP API, with examples for /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labelcut import tuning

# From tuning's one parameter object (issue 13): a new choice there is a choice here.
Objective = Literal[tuple(dict.fromkeys((*tuning.OBJECTIVES, *tuning.MULTICLASS_OBJECTIVES)))]
Strategy = Literal[tuning.parameter("strategy").choices]
DecisionRule = Literal[tuning.parameter("decision_rule").choices]

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
    activation: Literal["sigmoid", "softmax"] = Field(
        default="sigmoid",
        description="sigmoid: multi-label, each label on its own; softmax: multi-class, "
        "exactly one class per row (served as the argmax).",
    )
    outputs: Literal["logits", "probabilities"] = Field(
        default="logits",
        description="What the module returns: logits (labelcut applies the activation) or "
        "probabilities (declared; no activation applied).",
    )


class PredictRequest(BaseModel):
    """Rows to score. Each input has the model's input shape (a flat list for tabular models)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": [_YEAST_ROW]},
                {"inputs": [_YEAST_ROW], "thresholds": {"Class1": 0.3}, "return_logits": True},
                {"inputs": [_YEAST_ROW], "decision_rule": "top_k", "k": 2},
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
    decision_rule: DecisionRule | None = Field(
        default=None,
        description="threshold: every label with score >= threshold; at_least_one: also the "
        "top label when none passes; exactly_one: argmax (the multi-class rule); top_k: the "
        "best k of those that pass. Default: the active set's rule, else threshold.",
    )
    k: int | None = Field(default=None, ge=1, description="How many labels top_k keeps.")

    @model_validator(mode="after")
    def _k_goes_with_top_k(self) -> PredictRequest:
        if self.decision_rule == "top_k" and self.k is None:
            raise ValueError("decision_rule 'top_k' needs k (an integer >= 1).")
        if self.decision_rule != "top_k" and self.k is not None:
            raise ValueError("k is only used with decision_rule 'top_k'.")
        return self


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
    decision_rule: DecisionRule = "threshold"
    k: int | None = None
    predictions: list[Prediction]


class DefaultPoint(BaseModel):
    threshold: float
    precision: float
    recall: float
    f1: float
    fbeta: float
    predicted_positives: int


class LabelReport(BaseModel):
    # The objectives of issue 18 add their own figures (cost, lower/upper, review share...).
    model_config = ConfigDict(extra="allow")

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
    strategy: str | None = Field(
        default=None, description="What produced this threshold: per_label, shrunk, global..."
    )
    threshold_interval: list[float] | None = Field(
        default=None, description="Bootstrap confidence interval of the threshold."
    )
    f1_interval: list[float] | None = Field(
        default=None, description="Bootstrap confidence interval of F1 at the threshold."
    )
    unstable: bool | None = Field(default=None, description="An interval is wide.")


class TunedVsDefault(BaseModel):
    """In-sample figures (`tuned`, and `default` at 0.5); when the tune ran the cross-fitted
    estimate, also `expected` and `expected_interval` ([lo, hi]), or `expected: null` with
    `expected_reason`. Keys the tune did not produce stay absent (extra keys pass through)."""

    model_config = ConfigDict(extra="allow")

    tuned: float
    default: float


class Summary(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. cost, micro_fbeta, review_share

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
    decision_rule: DecisionRule = Field(
        default="threshold", description="The /predict rule this set applies by default."
    )
    k: int | None = None
    archived: bool = Field(default=False, description="Hidden from the default history.")
    activation: Literal["sigmoid", "softmax"] = Field(
        default="sigmoid",
        description="The model's activation when tuned: softmax sets hold one confidence "
        "threshold (params.confidence_threshold) and answer the argmax, or abstain below it.",
    )


class ClassReport(BaseModel):
    label: str
    precision: float = Field(description="Right / answered as this class (1 when none).")
    recall: float = Field(description="Right / rows of this class.")
    support: int
    predicted: int
    at_default: dict[str, float] = Field(description="The same with every row answered.")


class MulticlassReport(BaseModel):
    """A softmax set: one confidence threshold on the top probability."""

    decision_rule: Literal["exactly_one"] = "exactly_one"
    objective: str
    params: dict[str, Any]
    n_samples: int
    status: str = Field(description="ok | target_unreachable (then every row is answered).")
    threshold: float = Field(description="Answer a row iff its top probability >= threshold.")
    coverage: float = Field(description="Share of rows answered.")
    accuracy: float = Field(description="Accuracy on the answered rows (1 when none).")
    answered: int
    overall_accuracy: float = Field(description="Argmax accuracy on every row.")
    per_class: list[ClassReport] | None = None


class RiskCoverage(BaseModel):
    """The risk-coverage curve: point i < m answers rows with top probability >=
    thresholds[i]; the last point answers none (coverage 0, accuracy 1)."""

    thresholds: list[float]
    coverage: list[float]
    accuracy: list[float]
    chosen_index: int
    default_index: int


class ThresholdSetReport(BaseModel):
    """A stored set with everything measured when it was tuned: per-label figures
    (multi-label sets) or `multiclass` and `risk_coverage` (softmax sets)."""

    threshold_set: ThresholdSetInfo
    thresholds: dict[str, float]
    per_label: list[LabelReport] | None = None
    summary: Summary | None = None
    multiclass: MulticlassReport | None = None
    risk_coverage: RiskCoverage | None = None
    lower_thresholds: dict[str, float] | None = Field(
        default=None, description="decision_rule abstain: the lower threshold per label."
    )
    adaptation: dict[str, Any] | None = Field(
        default=None,
        description="A set adapted to unlabelled rows: from_set, n_rows, and per label the "
        "old and new prevalence, EM status and the new threshold.",
    )
    calibration: dict[str, Any] | None = Field(
        default=None,
        description="A calibrated set: method, the raw-scale thresholds, and ECE, Brier and "
        "reliability data before and after (out-of-fold). Thresholds apply to calibrated "
        "scores.",
    )
    strategy: str | None = None
    global_threshold: float | None = Field(
        default=None, description="The shared threshold (optimal for the pooled objective)."
    )
    diagnosis: dict[str, Any] | None = Field(
        default=None,
        description="Label cardinality, rows with 0/1/2+ labels, prevalence, labels that never "
        "co-occur, and plain-English messages (e.g. when the data looks multi-class).",
    )


class TuneReport(ThresholdSetReport):
    """What POST /tune-thresholds answers: the new set's report, or with `store=false` the
    same figures for a set that was not stored (`stored: false`, `threshold_set: null`)."""

    stored: bool = Field(default=True, description="Whether the tuned set was stored.")
    threshold_set: ThresholdSetInfo | None = Field(  # type: ignore[assignment]
        description="The stored set; null when store=false (nothing was stored, no id)."
    )


class ActiveThresholdsResponse(BaseModel):
    threshold_set: ThresholdSetInfo | None = Field(
        description="The active set; null when none is active (0.5 for every label)."
    )
    thresholds: dict[str, float]


class HistoryItem(ThresholdSetInfo):
    summary: Summary | None = None
    multiclass: MulticlassReport | None = None


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
    kind: Literal["precision_recall", "risk_coverage"] = Field(
        default="precision_recall",
        description="precision_recall: `curves`, one per label; risk_coverage (softmax "
        "sets): `risk_coverage`, and `curves` is empty.",
    )
    max_points: int
    curves: list[LabelCurve]
    risk_coverage: RiskCoverage | None = None
