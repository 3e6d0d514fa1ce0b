"""TuningResult fields and to_dict follow docs/CONTRACTS.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelcut.tuning import OBJECTIVES, TuningResult, tune_thresholds

CONTRACT_FIELDS = {
    "thresholds": np.float64,
    "precision": np.float64,
    "recall": np.float64,
    "f1": np.float64,
    "fbeta": np.float64,
    "support": np.int64,
    "predicted_positives": np.int64,
    "default_precision": np.float64,
    "default_recall": np.float64,
    "default_f1": np.float64,
    "default_fbeta": np.float64,
    "default_predicted_positives": np.int64,
}
PER_LABEL_KEYS = {
    "label",
    "threshold",
    "status",
    "precision",
    "recall",
    "f1",
    "fbeta",
    "support",
    "predicted_positives",
    "at_default",
}
PARAMS = {
    "beta": 2.0,
    "target": None,
    "min_positives": 1,
    "fallback": 0.5,
    "strategy": "per_label",
    "shrinkage": 6.0,
    "n_bootstrap": 200,
    "seed": 0,
    "confidence": 0.9,
}
NEW_PER_LABEL_KEYS = {"strategy", "threshold_interval", "f1_interval", "unstable"}
AT_DEFAULT_KEYS = {"threshold", "precision", "recall", "f1", "fbeta", "predicted_positives"}


@pytest.fixture(scope="module")
def result() -> TuningResult:
    rng = np.random.default_rng(5)
    scores = rng.random((400, 3)).astype(np.float32)
    targets = rng.random((400, 3)) < scores
    targets[:, 2] = False  # a label without positives
    return tune_thresholds(
        scores, targets, "fbeta", beta=2.0, device="cpu", strategy="per_label", n_bootstrap=0
    )


def test_objectives_tuple():
    assert OBJECTIVES[:4] == ("f1", "fbeta", "recall_at_precision", "precision_at_recall")
    assert OBJECTIVES[4:] == ("cost", "micro_f1", "micro_fbeta")


def test_fields_have_contract_types(result):
    for name, dtype in CONTRACT_FIELDS.items():
        values = getattr(result, name)
        assert isinstance(values, np.ndarray) and values.dtype == dtype and values.shape == (3,)
    assert result.status == ["ok", "ok", "no_positives"]
    assert result.objective == "fbeta" and result.n_samples == 400
    assert result.params == {**PARAMS, "n_bootstrap": 0}
    for name in ("macro_f1", "micro_f1", "default_macro_f1", "default_micro_f1"):
        assert isinstance(getattr(result, name), float)


def test_summary_metrics(result):
    assert result.macro_f1 == pytest.approx(result.f1.mean())
    tp = np.round(result.recall * result.support)
    micro = 2 * tp.sum() / (result.predicted_positives.sum() + result.support.sum())
    assert result.micro_f1 == pytest.approx(micro)


ESTIMATE_KEYS = {"expected_f1", "expected_f1_reason", "cross_fitted_f1"}


def test_to_dict_shape_and_json(result):
    data = result.to_dict(label_names=["Class1", "Class2", "Class3"])
    assert set(data) == {
        "objective",
        "params",
        "n_samples",
        "thresholds",
        "per_label",
        "summary",
        "strategy",
        "global_threshold",
        "diagnosis",
    }
    assert data["params"] == {**PARAMS, "n_bootstrap": 0}
    assert data["strategy"] == "per_label"
    assert list(data["thresholds"]) == ["Class1", "Class2", "Class3"]
    assert data["thresholds"]["Class3"] == 0.5
    for j, entry in enumerate(data["per_label"]):
        assert set(entry) == PER_LABEL_KEYS | NEW_PER_LABEL_KEYS | ESTIMATE_KEYS
        assert set(entry["at_default"]) == AT_DEFAULT_KEYS
        assert entry["threshold_interval"] is None and entry["unstable"] is None
        assert entry["strategy"] == ("per_label" if entry["status"] == "ok" else "fallback")
        assert entry["threshold"] == result.thresholds[j]
        assert entry["at_default"]["threshold"] == 0.5
        assert type(entry["support"]) is int and type(entry["f1"]) is float
    summary = data["summary"]
    assert set(summary) == {"macro_f1", "micro_f1", "estimate"}
    for key, tuned, default in (
        ("macro_f1", result.macro_f1, result.default_macro_f1),
        ("micro_f1", result.micro_f1, result.default_micro_f1),
    ):
        assert set(summary[key]) == {
            "tuned",
            "default",
            "expected",
            "expected_interval",
            "cross_fitted",
            "cross_fitted_interval",
            "out_of_fold_weight",
        }
        assert (summary[key]["tuned"], summary[key]["default"]) == (tuned, default)
    assert result.estimate is not None and isinstance(summary["estimate"], str)
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_to_dict_default_names_and_errors(result):
    assert list(result.to_dict()["thresholds"]) == ["0", "1", "2"]
    with pytest.raises(ValueError, match="label_names must have one name per label"):
        result.to_dict(label_names=["a"])
    with pytest.raises(ValueError, match="label_names must be unique"):
        result.to_dict(label_names=["a", "a", "b"])


def test_result_is_frozen(result):
    with pytest.raises(AttributeError):
        result.objective = "f1"
