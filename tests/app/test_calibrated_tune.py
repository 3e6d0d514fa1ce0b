"""Issue 19, the tune side: `calibration=temperature|platt|isotonic` fits a calibrator
beside the thresholds, stores it per SPEC-wave2 (`params.calibration`), maps the raw-tuned
thresholds through it (same decisions for the strictly increasing maps), reports ECE and
Brier before and after, and `/predict` serves calibrated probabilities with them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelcut import tuning
from labelcut.app.cli import main
from labelcut.models import YEAST_TEST, load_model

from .conftest import make_client, wait_ready


@pytest.fixture(scope="module")
def yeast():
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        x, y = z["X"], z["Y"]
    model = load_model(device="cpu")
    return {"X": x, "Y": y, "scores": model.predict_proba(x), "labels": list(model.labels)}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with make_client(tmp_path_factory.mktemp("calibrated")) as c:
        wait_ready(c)
        yield c


def tune(client, **form):
    files = {"file": ("v.npz", YEAST_TEST.read_bytes())}
    return client.post("/tune-thresholds", files=files, data={"n_bootstrap": "0", **form})


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_calibrated_set_keeps_the_raw_decisions(client, yeast, method):
    raw = tune(client, activate="false").json()
    response = tune(client, calibration=method)
    assert response.status_code == 200, response.text
    body = response.json()
    labels = yeast["labels"]
    block = body["calibration"]
    assert block["method"] == method and block["raw_thresholds"] == raw["thresholds"]
    stored = body["threshold_set"]["params"]["calibration"]
    calibrator = tuning.Calibrator.from_dict(stored["calibrator"])
    assert calibrator.method == method
    np.testing.assert_allclose(stored["prior"], yeast["Y"].mean(axis=0))
    served = calibrator.apply(yeast["scores"].astype(np.float64))
    mapped = np.array([body["thresholds"][label] for label in labels])
    raw_t = np.array([raw["thresholds"][label] for label in labels])
    np.testing.assert_array_equal(served >= mapped, yeast["scores"] >= raw_t)
    np.testing.assert_allclose(stored["expected"]["positive_rate"], (served >= mapped).mean(0))
    np.testing.assert_allclose(stored["expected"]["mean_score"], served.mean(axis=0))
    # Figures before (raw) and after (out-of-fold calibrated), with reliability data.
    for side in ("before", "after"):
        assert set(block[side]) >= {"ece", "brier", "per_label"}
    assert block["before"]["ece"] == pytest.approx(
        tuning.compare_calibration(yeast["scores"], yeast["scores"], yeast["Y"])["before"]["ece"]
    )
    # /predict serves the calibrated scores and the same labels as the raw-tuned set.
    rows = yeast["X"][:40]
    answer = client.post("/predict", json={"inputs": rows.tolist()}).json()
    assert answer["threshold_set_id"] == body["threshold_set"]["id"]
    for i, prediction in enumerate(answer["predictions"]):
        got = np.array([prediction["scores"][label] for label in labels])
        np.testing.assert_allclose(got, served[i], atol=1e-5)
        expected = [lab for j, lab in enumerate(labels) if yeast["scores"][i, j] >= raw_t[j]]
        assert prediction["labels"] == expected


def test_calibrated_curves_are_on_the_calibrated_scale(client):
    body = tune(client, calibration="temperature").json()
    curves = client.get(f"/thresholds/{body['threshold_set']['id']}/curves").json()["curves"]
    for curve in curves:
        assert curve["threshold"] == body["thresholds"][curve["label"]]
        chosen = curve["chosen_index"]
        if chosen < len(curve["thresholds"]):
            assert curve["thresholds"][chosen] >= curve["threshold"] - 1e-9


@pytest.mark.parametrize("value", ["sigmoid", "1", ""])
def test_bad_calibration_is_422_naming_it(client, value):
    before = client.get("/thresholds/history").json()
    response = tune(client, calibration=value)
    if value == "":  # an empty field is "not sent": no calibration
        assert response.status_code == 200
        assert "calibration" not in response.json()["threshold_set"]["params"]
        return
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "calibration"]
    assert client.get("/thresholds/history").json() == before


def test_cli_calibration_flag(tmp_path):
    out = tmp_path / "cal.json"
    args = ["tune", str(YEAST_TEST), "--device", "cpu", "--n-bootstrap", "0"]
    assert main([*args, "--calibration", "isotonic", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["calibration"]["method"] == "isotonic"
    assert report["thresholds"] != report["calibration"]["raw_thresholds"]
    assert tuning.Calibrator.from_dict(report["calibration"]["calibrator"]).method == "isotonic"


def test_a_calibrated_abstain_set_maps_both_thresholds(client, yeast):
    form = {"decision_rule": "abstain", "target": "0.8", "npv_target": "0.9"}
    raw = tune(client, activate="false", **form).json()["threshold_set"]["params"]
    body = tune(client, activate="false", calibration="temperature", **form).json()
    params = body["threshold_set"]["params"]
    calibrator = tuning.Calibrator.from_dict(params["calibration"]["calibrator"])
    served = calibrator.apply(yeast["scores"].astype(np.float64))
    lower, raw_lower = np.array(params["lower_thresholds"]), np.array(raw["lower_thresholds"])
    np.testing.assert_array_equal(served >= lower, yeast["scores"] >= raw_lower)
    upper = np.array([body["thresholds"][label] for label in yeast["labels"]])
    assert (lower <= upper).all()
    assert list(body["lower_thresholds"].values()) == params["lower_thresholds"]


def test_cross_fit_tuning_tunes_on_out_of_fold_calibrated_scores(client, yeast):
    """calibration_tuning=cross_fit: the thresholds are those of tune_thresholds on the
    out-of-fold calibrated scores (the oracle recomputes them), stored with the calibrator
    fit on every row, and /predict decides on the served calibrated scores with them."""
    response = tune(client, calibration="platt", calibration_tuning="cross_fit")
    assert response.status_code == 200, response.text
    body = response.json()
    labels = yeast["labels"]
    fit = tuning.cross_fit_calibrate(yeast["scores"], yeast["Y"], "platt", seed=0)
    oracle = tuning.tune_thresholds(fit.calibrated, yeast["Y"], n_bootstrap=0, device="cpu")
    got = np.array([body["thresholds"][label] for label in labels])
    np.testing.assert_allclose(got, oracle.thresholds)
    assert body["calibration"]["thresholds_tuned_on"].startswith("out-of-fold")
    stored = tuning.Calibrator.from_dict(
        body["threshold_set"]["params"]["calibration"]["calibrator"]
    )
    served = stored.apply(yeast["scores"].astype(np.float64))
    np.testing.assert_allclose(served, fit.calibrator.apply(yeast["scores"].astype(np.float64)))
    rows = yeast["X"][:40]
    answer = client.post("/predict", json={"inputs": rows.tolist()}).json()
    assert answer["threshold_set_id"] == body["threshold_set"]["id"] and answer["calibrated"]
    for i, prediction in enumerate(answer["predictions"]):
        want = [lab for j, lab in enumerate(labels) if served[i, j] >= got[j]]
        assert prediction["labels"] == want


@pytest.mark.parametrize(
    ("form", "needle"),
    [
        ({"calibration_tuning": "cross_fit"}, "needs a calibration"),
        ({"calibration": "platt", "calibration_tuning": "folds"}, "calibration_tuning"),
    ],
)
def test_bad_calibration_tuning_is_422_naming_it(client, form, needle):
    response = tune(client, activate="false", **form)
    assert response.status_code == 422, response.text
    assert needle in response.text and "calibration_tuning" in response.text
