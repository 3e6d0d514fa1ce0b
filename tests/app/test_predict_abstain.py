"""Issue 18 at /predict: the abstain band (`labels` the confident yeses, `uncertain` the
labels with lower <= score < upper), its 422s, and thresholds above 1 by at most 2**-10.

The app runs in process with the bundled yeast model and a real SQLite store; the oracle
is the model loaded here and numpy's comparisons.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from labelcut.models import DEFAULT_MODEL_DIR, YEAST_TEST, load_model

from ..support.inprocess import app_client, wait_ready
from .stored_sets import store_set

ROWS = 40
NOTHING = 1 + 2**-10  # "predict nothing", even at a score of 1.0


@pytest.fixture(scope="module")
def yeast() -> dict:
    model = load_model(DEFAULT_MODEL_DIR, device="cpu")
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        x, y = z["X"].astype(np.float32), z["Y"]
    proba = model.predict_proba(x)
    lower = np.quantile(proba, 0.3, axis=0)
    upper = np.quantile(proba, 0.7, axis=0)
    lower[-1], upper[-1] = 0.9, NOTHING  # the last label: never a confident yes
    return {"model": model, "X": x[:ROWS], "Y": y, "all_proba": proba, "proba": proba[:ROWS],
            "lower": lower, "upper": upper}  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    data_dir = tmp_path_factory.mktemp("abstain") / "data"
    with app_client(data_dir) as c:
        wait_ready(c)
        c.data_dir = data_dir  # type: ignore[attr-defined]
        yield c


def _activate(client: TestClient, yeast: dict, thresholds, params) -> int:
    set_id = store_set(
        Path(client.data_dir), yeast["model"], yeast["all_proba"], yeast["Y"], thresholds, params
    )
    # The service's own activation (what POST /thresholds/{id}/activate calls), so that
    # these tests do not depend on how that route shows a set.
    client.app.state.service.activate(set_id)
    return set_id


def _named(flags: np.ndarray, labels: list[str]) -> list[list[str]]:
    return [[labels[j] for j in np.flatnonzero(row)] for row in flags]


def test_without_a_stored_band_abstain_is_422(client, yeast):
    _activate(client, yeast, yeast["upper"], {"decision_rule": "threshold"})
    r = client.post("/predict", json={"inputs": yeast["X"].tolist(), "decision_rule": "abstain"})
    assert r.status_code == 422
    assert "decision_rule 'abstain' needs the lower thresholds" in r.json()["detail"]


def test_the_stored_abstain_rule_answers_yeses_and_uncertain(client, yeast):
    labels = yeast["model"].labels
    lower, upper = yeast["lower"], yeast["upper"]
    set_id = _activate(
        client,
        yeast,
        upper,
        {"decision_rule": "abstain", "lower_thresholds": lower.tolist(), "npv_target": 0.9},
    )
    body = client.post("/predict", json={"inputs": yeast["X"].tolist()}).json()
    assert body["threshold_set_id"] == set_id and body["decision_rule"] == "abstain"
    p = yeast["proba"].astype(np.float64)
    yes, band = p >= upper, (p >= lower) & (p < upper)
    assert [row["labels"] for row in body["predictions"]] == _named(yes, labels)
    assert [row["uncertain"] for row in body["predictions"]] == _named(band, labels)
    assert band.any() and yes.any()
    assert not any(labels[-1] in row["labels"] for row in body["predictions"])
    # Asked for explicitly, the same answer; the plain rule drops the band.
    again = client.post(
        "/predict", json={"inputs": yeast["X"].tolist(), "decision_rule": "abstain"}
    ).json()
    assert again["predictions"] == body["predictions"]
    plain = client.post(
        "/predict", json={"inputs": yeast["X"].tolist(), "decision_rule": "threshold"}
    ).json()
    assert [row["labels"] for row in plain["predictions"]] == _named(yes, labels)
    assert all("uncertain" not in row for row in plain["predictions"])


def test_an_override_moves_the_upper_threshold_but_not_below_the_band(client, yeast):
    labels = yeast["model"].labels
    lower, upper = yeast["lower"], yeast["upper"]
    _activate(
        client, yeast, upper, {"decision_rule": "abstain", "lower_thresholds": lower.tolist()}
    )
    moved = float(lower[0])  # upper = lower: label 0 has no band left
    body = client.post(
        "/predict", json={"inputs": yeast["X"].tolist(), "thresholds": {labels[0]: moved}}
    ).json()
    p = yeast["proba"].astype(np.float64)
    high = upper.copy()
    high[0] = moved
    yes, band = p >= high, (p >= lower) & (p < high)
    assert [row["labels"] for row in body["predictions"]] == _named(yes, labels)
    assert [row["uncertain"] for row in body["predictions"]] == _named(band, labels)
    below = client.post(
        "/predict",
        json={"inputs": yeast["X"].tolist(), "thresholds": {labels[0]: float(lower[0]) / 2}},
    )
    assert below.status_code == 422
    assert f"thresholds['{labels[0]}']" in below.json()["detail"]
    assert "below the lower threshold" in below.json()["detail"]


@pytest.mark.parametrize(("value", "status"), [(NOTHING, 200), (1 + 2**-9, 422), (-0.01, 422)])
def test_request_thresholds_above_one_by_at_most_2_to_the_minus_10(client, yeast, value, status):
    labels = yeast["model"].labels
    _activate(client, yeast, np.full(len(labels), 0.5), {"decision_rule": "threshold"})
    r = client.post(
        "/predict", json={"inputs": yeast["X"].tolist(), "thresholds": {labels[2]: value}}
    )
    assert r.status_code == status, r.text
    if status == 200:
        assert not any(labels[2] in row["labels"] for row in r.json()["predictions"])
    else:
        assert f"thresholds['{labels[2]}'] is {value}; it must be in [0, 1]" in r.json()["detail"]


def test_a_confidence_threshold_on_a_sigmoid_model_is_422(client, yeast):
    r = client.post("/predict", json={"inputs": yeast["X"][:1].tolist(), "threshold": 0.5})
    assert r.status_code == 422
    assert "applies only to softmax (multi-class) models" in r.json()["detail"]
