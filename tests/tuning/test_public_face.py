"""The public face of labelcut.tuning: the wave-2 names and the multi-class advice."""

from __future__ import annotations

import numpy as np

import labelcut.tuning as tuning
from labelcut.tuning import abstain, costs, drift, micro, risk_coverage
from labelcut.tuning.diagnosis import diagnose

WAVE_TWO = {
    risk_coverage: [
        "tune_confidence_threshold",
        "risk_coverage_curve",
        "apply_confidence_threshold",
        "class_indices",
        "NotMultiClassError",
        "ConfidenceResult",
        "MULTICLASS_OBJECTIVES",
    ],
    costs: ["tune_costs", "cost_vector"],
    micro: ["tune_micro_fbeta"],
    abstain: ["tune_abstain", "apply_abstain"],
    drift: ["DriftWindow", "expected_rates", "drifted_labels"],
}


def test_every_wave_two_name_is_exported_and_is_the_module_object():
    for module, names in WAVE_TWO.items():
        for name in names:
            assert name in tuning.__all__, name
            assert getattr(tuning, name) is getattr(module, name), name
    for name in (
        "Calibrator",
        "fit_calibrator",
        "cross_fit_calibrate",
        "compare_calibration",
        "calibration_report",
        "estimate_priors",
        "adapt_to_unlabelled",
        "evaluate_thresholds",
    ):
        assert name in tuning.__all__ and callable(getattr(tuning, name)), name
    assert len(set(tuning.__all__)) == len(tuning.__all__)
    assert all(hasattr(tuning, name) for name in tuning.__all__)


def test_multiclass_advice_says_to_tune_with_exactly_one():
    labels = np.random.default_rng(3).integers(0, 4, 300)
    one_hot = np.eye(4, dtype=np.uint8)[labels]
    message = diagnose(one_hot)["messages"][0]
    assert "CrossEntropyLoss" in message
    assert "tune with `decision_rule=exactly_one` meanwhile" in message
    multi = one_hot.copy()
    multi[:60, 0] = 1  # a fifth of rows now have two labels: no multi-class advice
    assert not any("exactly_one" in m for m in diagnose(multi)["messages"])
