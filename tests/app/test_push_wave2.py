"""`labelcut tune --out` then `POST /thresholds` for the wave-2 sets: a calibrated report
keeps its calibrator (so the mapped thresholds meet calibrated scores), an abstain report
its lower thresholds, micro and cost reports their joint strategy and per-label costs;
forged calibrators and lower thresholds are 422."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from labelcut import tuning
from labelcut.app.cli import main as cli_main
from labelcut.models import YEAST_TEST, load_model

from ..support.inprocess import app_client, wait_ready

BASE = ["tune", str(YEAST_TEST), "--device", "cpu", "--n-bootstrap", "0"]


def offline(tmp_path, *flags: str) -> dict:
    out = tmp_path / "report.json"
    assert cli_main([*BASE, *flags, "--out", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.fixture
def client(tmp_path):
    with app_client(tmp_path / "data") as c:
        wait_ready(c)
        yield c


def test_a_pushed_calibrated_report_serves_calibrated_scores(client, tmp_path):
    report = offline(tmp_path, "--calibration", "platt")
    answer = client.post("/thresholds?activate=true", json=report)
    assert answer.status_code == 201, answer.text
    params = answer.json()["threshold_set"]["params"]
    assert params["calibration"]["calibrator"] == report["calibration"]["calibrator"]
    assert answer.json()["calibration"]["raw_thresholds"] == report["calibration"]["raw_thresholds"]
    calibrator = tuning.Calibrator.from_dict(params["calibration"]["calibrator"])
    with np.load(YEAST_TEST) as z:
        rows = z["X"][:5]
    raw = load_model(device="cpu").predict_proba(rows)
    body = client.post("/predict", json={"inputs": rows.tolist()}).json()
    got = np.array([list(p["scores"].values()) for p in body["predictions"]])
    np.testing.assert_allclose(got, calibrator.apply(raw), atol=1e-5)
    raw_t = np.array(list(report["calibration"]["raw_thresholds"].values()))
    for i, prediction in enumerate(body["predictions"]):
        expected = [label for j, label in enumerate(report["thresholds"]) if raw[i, j] >= raw_t[j]]
        assert prediction["labels"] == expected


def test_forged_calibrators_are_422(client, tmp_path):
    report = offline(tmp_path, "--calibration", "temperature")
    for forge in (
        lambda r: r["calibration"]["calibrator"].update(temperature=[-1.0] * 14),
        lambda r: r["calibration"]["calibrator"].update(n_labels=3),
        lambda r: r["calibration"].update(method="platt"),
        lambda r: r["calibration"].update(prior=[0.5] * 3),
    ):
        forged = copy.deepcopy(report)
        forge(forged)
        answer = client.post("/thresholds", json=forged)
        assert answer.status_code == 422, answer.text
        assert "calibration" in answer.json()["detail"]
    assert client.get("/thresholds/history").json()["items"] == []


def test_a_pushed_abstain_report_keeps_its_lower_thresholds(client, tmp_path):
    flags = ("--decision-rule", "abstain", "--target", "0.8", "--npv-target", "0.9")
    report = offline(tmp_path, *flags)
    answer = client.post("/thresholds", json=report)
    assert answer.status_code == 201, answer.text
    info = answer.json()["threshold_set"]
    assert info["decision_rule"] == "abstain"
    assert info["params"]["lower_thresholds"] == list(report["lower_thresholds"].values())
    forged = copy.deepcopy(report)
    first = next(iter(forged["lower_thresholds"]))
    forged["lower_thresholds"][first] = forged["thresholds"][first] + 0.1
    assert client.post("/thresholds", json=forged).status_code == 422
    del forged["lower_thresholds"]
    assert client.post("/thresholds", json=forged).status_code == 422


@pytest.mark.parametrize(
    "flags",
    [("--objective", "micro_f1"), ("--objective", "cost", "--cost-fn", '{"Class1": 4, "*": 2}')],
)
def test_micro_and_cost_reports_push(client, tmp_path, flags):
    report = offline(tmp_path, *flags)
    answer = client.post("/thresholds", json=report)
    assert answer.status_code == 201, answer.text
    assert answer.json()["thresholds"] == report["thresholds"]


def test_a_softmax_report_pushes_onto_the_softmax_model_only(tmp_path):
    from labelcut.models import DIGITS_MODEL_DIR, DIGITS_TEST

    out = tmp_path / "digits.json"
    args = ["tune", str(DIGITS_TEST), "--model", str(DIGITS_MODEL_DIR), "--device", "cpu"]
    flags = ["--objective", "coverage_at_accuracy", "--target", "0.99", "--out", str(out)]
    assert cli_main([*args, *flags]) == 0
    report = json.loads(out.read_text())
    with app_client(tmp_path / "yeast") as yeast_client:
        wait_ready(yeast_client)
        refused = yeast_client.post("/thresholds", json=report)
        assert refused.status_code == 422 and "softmax" in refused.json()["detail"]
    with app_client(tmp_path / "digits", model_dir=DIGITS_MODEL_DIR) as client:
        wait_ready(client)
        forged = copy.deepcopy(report)
        forged["thresholds"]["0"] = 0.123
        assert client.post("/thresholds", json=forged).status_code == 422
        answer = client.post("/thresholds?activate=true", json=report)
        assert answer.status_code == 201, answer.text
        body = answer.json()
        threshold = report["multiclass"]["threshold"]
        assert body["threshold_set"]["params"]["confidence_threshold"] == threshold
        assert body["multiclass"]["coverage"] == report["multiclass"]["coverage"]
        curves = client.get(f"/thresholds/{body['threshold_set']['id']}/curves").json()
        assert curves["kind"] == "risk_coverage"
        with np.load(DIGITS_TEST) as z:
            rows = z["X"][:30]
        proba = load_model(DIGITS_MODEL_DIR, device="cpu").predict_proba(rows)
        served = client.post("/predict", json={"inputs": rows.tolist()}).json()["predictions"]
        for i, prediction in enumerate(served):
            top = float(proba[i].max())
            assert prediction["labels"] == ([str(proba[i].argmax())] if top >= threshold else [])
