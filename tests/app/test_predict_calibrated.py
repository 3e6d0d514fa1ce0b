"""Issue 19 at /predict: a calibrated set serves `calibrator.apply(model probabilities)`,
decides on those, keeps `return_logits` raw, and feeds the calibrated scores to the drift
window (`GET /drift`).

In process (the bundled yeast model, a real SQLite store); the oracle is the calibrator
fitted here with `labelcut.tuning.calibration.fit_calibrator`, applied with numpy.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from labelcut.models import DEFAULT_MODEL_DIR, YEAST_TEST, load_model
from labelcut.tuning.calibration import fit_calibrator
from labelcut.tuning.drift import expected_rates

from ..support.inprocess import app_client, wait_ready
from .stored_sets import store_set

ROWS = 50


@pytest.fixture(scope="module")
def yeast() -> dict:
    model = load_model(DEFAULT_MODEL_DIR, device="cpu")
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        x, y = z["X"].astype(np.float32), z["Y"]
    return {"model": model, "X": x, "Y": y, "proba": model.predict_proba(x)}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    data_dir = tmp_path_factory.mktemp("calibrated") / "data"
    with app_client(data_dir) as c:
        wait_ready(c)
        c.data_dir = data_dir  # type: ignore[attr-defined]
        yield c


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrated_scores_decisions_and_raw_logits(client, yeast, method):
    model, labels = yeast["model"], yeast["model"].labels
    # Fitted on the second part of the split; served on the first part.
    calibrator = fit_calibrator(yeast["proba"][ROWS:], yeast["Y"][ROWS:], method)
    calibrated_all = calibrator.apply(yeast["proba"])
    thresholds = calibrator.map_thresholds(np.full(len(labels), 0.35))
    expected = expected_rates(calibrated_all[ROWS:], thresholds)
    params = {
        "calibration": {
            "method": method,
            "calibrator": calibrator.to_dict(),
            "prior": yeast["Y"][ROWS:].mean(axis=0).tolist(),
            "expected": {
                "positive_rate": expected.positive_share.tolist(),
                "mean_score": expected.mean_score.tolist(),
            },
        }
    }
    set_id = store_set(Path(client.data_dir), model, calibrated_all, yeast["Y"], thresholds, params)
    client.app.state.service.activate(set_id)
    x = yeast["X"][:ROWS]
    r = client.post("/predict", json={"inputs": x.tolist(), "return_logits": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["calibrated"] is True and body["threshold_set_id"] == set_id
    served = np.array([[p["scores"][label] for label in labels] for p in body["predictions"]])
    oracle = calibrator.apply(yeast["proba"][:ROWS]).astype(np.float32)
    np.testing.assert_allclose(served, oracle, rtol=0, atol=1e-6)
    assert np.abs(served - yeast["proba"][:ROWS]).max() > 1e-3  # the calibration shows
    decided = oracle.astype(np.float64) >= thresholds
    assert [p["labels"] for p in body["predictions"]] == [
        [labels[j] for j in np.flatnonzero(row)] for row in decided
    ]
    logits = np.array([[p["logits"][label] for label in labels] for p in body["predictions"]])
    np.testing.assert_allclose(logits, model.predict_logits(x), rtol=0, atol=1e-5)

    # The .npy answer holds the same calibrated scores, and says so.
    buffer = io.BytesIO()
    np.save(buffer, x)
    npy = client.post(
        "/predict",
        content=buffer.getvalue(),
        headers={"content-type": "application/x-npy", "accept": "application/x-npy"},
    )
    assert npy.headers["x-labelcut-calibrated"] == "true"
    np.testing.assert_allclose(np.load(io.BytesIO(npy.content)), oracle, rtol=0, atol=1e-6)

    # The drift window (emptied at the activation) holds the two requests' served rows.
    drift = client.get("/drift").json()
    assert drift["threshold_set_id"] == set_id and drift["window"]["rows"] == 2 * ROWS
    twice = np.concatenate([oracle, oracle]).astype(np.float64)
    for j, entry in enumerate(drift["labels"]):
        assert entry["mean_score"] == pytest.approx(twice[:, j].mean(), abs=1e-6)
        assert entry["positive_rate"] == pytest.approx(decided[:, j].mean(), abs=1e-12)
        assert entry["expected_positive_rate"] == pytest.approx(expected.positive_share[j])
        assert entry["expected_mean_score"] == pytest.approx(expected.mean_score[j])


def test_an_uncalibrated_set_serves_the_model_probabilities(client, yeast):
    labels = yeast["model"].labels
    set_id = store_set(
        Path(client.data_dir),
        yeast["model"],
        yeast["proba"],
        yeast["Y"],
        np.full(len(labels), 0.4),
        {},
    )
    client.app.state.service.activate(set_id)
    body = client.post("/predict", json={"inputs": yeast["X"][:5].tolist()}).json()
    served = np.array([[p["scores"][label] for label in labels] for p in body["predictions"]])
    assert body["calibrated"] is False
    np.testing.assert_allclose(served, yeast["proba"][:5], rtol=0, atol=1e-6)
    assert client.get("/drift").json()["labels"][0]["expected_positive_rate"] is None
