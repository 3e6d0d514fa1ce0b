"""POST /thresholds for a softmax report (`labelcut tune` on a multi-class bundle): one
confidence threshold, the figures at it and the risk-coverage curve, stored as SPEC-wave2
says (`params.confidence_threshold`, thresholds `[t] * C`, `result.risk_coverage`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labelcut.app.store import NewThresholdSet

Rate = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=2**53)]
MAX_CLASSES = 100_000
MAX_CURVE = 1001  # points: at most 1000 thresholds plus "nothing answered"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class PushedClass(_Strict):
    label: str
    precision: Rate
    recall: Rate
    support: Count
    predicted: Count
    at_default: dict[Literal["precision", "recall"], Rate]


class PushedConfidence(_Strict):
    decision_rule: Literal["exactly_one"] = "exactly_one"
    objective: Literal["coverage_at_accuracy", "accuracy_at_coverage"]
    params: dict[Literal["target", "fallback"], Rate]
    n_samples: int = Field(ge=1, le=2**53)
    status: Literal["ok", "target_unreachable"]
    threshold: Rate
    coverage: Rate
    accuracy: Rate
    answered: Count
    overall_accuracy: Rate
    per_class: list[PushedClass] = Field(min_length=2, max_length=MAX_CLASSES)

    @model_validator(mode="after")
    def _counts(self) -> PushedConfidence:
        if self.answered > self.n_samples or any(
            row.support > self.n_samples or row.predicted > self.answered for row in self.per_class
        ):
            raise ValueError("multiclass counts more rows than n_samples (or than answered).")
        if abs(self.answered / self.n_samples - self.coverage) > 1e-9:
            raise ValueError("multiclass.coverage is not answered / n_samples.")
        return self


class PushedRiskCoverage(_Strict):
    thresholds: list[Rate] = Field(max_length=MAX_CURVE - 1)
    coverage: list[Rate] = Field(min_length=1, max_length=MAX_CURVE)
    accuracy: list[Rate] = Field(min_length=1, max_length=MAX_CURVE)
    chosen_index: Count
    default_index: Count

    @model_validator(mode="after")
    def _consistent(self) -> PushedRiskCoverage:
        n = len(self.coverage)
        if len(self.accuracy) != n or len(self.thresholds) != n - 1:
            raise ValueError(
                "risk_coverage: coverage and accuracy need one point more than thresholds."
            )
        if self.chosen_index >= n or self.default_index >= n:
            raise ValueError("risk_coverage: an index is past the curve's end.")
        if any(a > b for a, b in zip(self.thresholds, self.thresholds[1:], strict=False)):
            raise ValueError("risk_coverage: thresholds must be ascending.")
        return self


class PushedSoftmaxReport(_Strict):
    activation: Literal["softmax"]
    objective: Literal["coverage_at_accuracy", "accuracy_at_coverage"]
    thresholds: dict[str, Rate] = Field(min_length=2, max_length=MAX_CLASSES)
    multiclass: PushedConfidence
    risk_coverage: PushedRiskCoverage
    data_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    decision_rule: Literal["exactly_one"] = "exactly_one"


def check_softmax_report(report: PushedSoftmaxReport, labels: list[str], activation: str) -> str:
    """The first problem the schema cannot state, or "" when there is none."""
    if activation != "softmax":
        return "This is a softmax (multi-class) report; the loaded model is multi-label (sigmoid)."
    if list(report.thresholds) != labels:
        return f"The labels of 'thresholds' must be the model's, in its order ({labels})."
    if [row.label for row in report.multiclass.per_class] != labels:
        return "The labels of 'multiclass.per_class' must be the model's, in its order."
    if set(report.thresholds.values()) != {report.multiclass.threshold}:
        return "Every class of a softmax report has the one confidence threshold."
    if report.objective != report.multiclass.objective:
        return "objective differs from multiclass.objective."
    return ""


def softmax_set(
    report: PushedSoftmaxReport, model_name: str, model_sha256: str, labels: list[str]
) -> NewThresholdSet:
    multiclass = report.multiclass.model_dump()
    threshold = report.multiclass.threshold
    return NewThresholdSet(
        model_name=model_name,
        model_sha256=model_sha256,
        labels=labels,
        objective=report.objective,
        params={
            "activation": "softmax",
            "decision_rule": "exactly_one",
            "k": None,
            "confidence_threshold": threshold,
            **multiclass["params"],
            "origin": "push",
        },
        data_sha256=report.data_sha256 or "unknown",
        n_samples=report.multiclass.n_samples,
        thresholds=[threshold] * len(labels),
        result={
            "activation": "softmax",
            "multiclass": multiclass,
            "risk_coverage": report.risk_coverage.model_dump(),
        },
    )


def is_softmax_report(data: Any) -> bool:
    return isinstance(data, dict) and (data.get("activation") == "softmax" or "multiclass" in data)
