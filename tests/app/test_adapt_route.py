"""Issue 19, `POST /thresholds/{id}/adapt`: unlabelled rows drawn with another label mix
move a set's priors (EM) and thresholds; the result is a new inactive set with old and new
prevalence per label, and `/predict` serves its calibrator once activated. Bad input and
other models' sets are refused without storing anything."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from labelcut import tuning
from labelcut.app.config import Settings
from labelcut.app.main import create_app
from labelcut.models import DIGITS_MODEL_DIR, DIGITS_TEST, YEAST_TEST, load_model

from ..support.inprocess import LOOPBACK, wait_ready


def app_with_adapt(data_dir, **overrides) -> TestClient:
    app = create_app(Settings(data_dir=data_dir, device="cpu", **overrides))
    return TestClient(app, client=LOOPBACK)


@pytest.fixture(scope="module")
def yeast():
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        x, y = z["X"], z["Y"]
    return {"X": x, "Y": y, "scores": load_model(device="cpu").predict_proba(x)}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with app_with_adapt(tmp_path_factory.mktemp("adapt") / "data") as c:
        wait_ready(c)
        yield c


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def tuned_set(client, **form) -> dict:
    files = {"file": ("v.npz", YEAST_TEST.read_bytes())}
    response = client.post("/tune-thresholds", files=files, data={"n_bootstrap": "0", **form})
    assert response.status_code == 200, response.text
    return response.json()


def history(client) -> list[int]:
    return [item["id"] for item in client.get("/thresholds/history").json()["items"]]


@pytest.mark.parametrize("calibration", ["none", "temperature"])
def test_rows_with_a_rarer_label_lower_its_prior_in_a_new_inactive_set(client, yeast, calibration):
    base = tuned_set(client, calibration=calibration)
    # Unlabelled rows without any positive of Class1 (the label's prevalence drops).
    j = 0
    keep = yeast["Y"][:, j] == 0
    response = client.post(
        f"/thresholds/{base['threshold_set']['id']}/adapt",
        files={"file": ("u.npz", npz(X=yeast["X"][keep]))},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    info = body["threshold_set"]
    assert info["active"] is False and info["params"]["adapted_from"] == base["threshold_set"]["id"]
    assert info["n_samples"] == int(keep.sum())
    rows = body["adaptation"]["per_label"]
    np.testing.assert_allclose(rows[j]["prevalence_old"], yeast["Y"][:, j].mean())
    assert rows[j]["prevalence_new"] < rows[j]["prevalence_old"]
    # The served calibrator carries the new prior; the same figures come from tuning directly.
    calibration_block = info["params"]["calibration"]
    assert calibration_block["prior"] == [row["prevalence_new"] for row in rows]
    served = tuning.Calibrator.from_dict(calibration_block["calibrator"])
    expected = tuning.expected_rates(
        served.apply(yeast["scores"][keep]), np.array(list(body["thresholds"].values()))
    )
    np.testing.assert_allclose(
        calibration_block["expected"]["positive_rate"], expected.positive_share
    )
    assert client.get("/thresholds").json()["threshold_set"]["id"] == base["threshold_set"]["id"]
    activated = client.post(f"/thresholds/{info['id']}/activate")
    assert activated.status_code == 200
    answer = client.post("/predict", json={"inputs": yeast["X"][:3].tolist()}).json()
    got = np.array([list(p["scores"].values()) for p in answer["predictions"]])
    np.testing.assert_allclose(got, served.apply(yeast["scores"][:3]), atol=1e-5)
    client.post(f"/thresholds/{base['threshold_set']['id']}/activate")


def test_adapt_takes_scores_and_csv_too(client, yeast):
    base = tuned_set(client, activate="false")["threshold_set"]["id"]
    labels = [f"Class{i}" for i in range(1, 15)]
    by_scores = client.post(
        f"/thresholds/{base}/adapt", files={"file": ("u.npz", npz(scores=yeast["scores"]))}
    )
    header = ",".join(f"score:{label}" for label in labels)
    text = header + "\n" + "\n".join(",".join(f"{v:.9g}" for v in row) for row in yeast["scores"])
    by_csv = client.post(f"/thresholds/{base}/adapt", files={"file": ("u.csv", text.encode())})
    assert by_scores.status_code == by_csv.status_code == 200, (by_scores.text, by_csv.text)
    a = [r["prevalence_new"] for r in by_scores.json()["adaptation"]["per_label"]]
    b = [r["prevalence_new"] for r in by_csv.json()["adaptation"]["per_label"]]
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "content", "code", "needle"),
    [
        ("u.npz", b"not a zip", 422, "not a valid .npz"),
        ("u.npz", npz(Y=np.zeros((3, 14))), 422, "exactly one of 'X'"),
        ("u.npz", npz(X=np.zeros((3, 5), dtype=np.float32)), 422, "Array 'X' has shape"),
        ("u.npz", npz(scores=np.full((3, 14), 2.0)), 422, "probabilities in [0, 1]"),
        ("u.txt", b"1,2", 415, "Unsupported file format"),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(client, name, content, code, needle):
    base = tuned_set(client, activate="false")["threshold_set"]["id"]
    before = history(client)
    response = client.post(f"/thresholds/{base}/adapt", files={"file": (name, content)})
    assert response.status_code == code, response.text
    assert needle in response.json()["detail"]
    assert history(client) == before


def test_unknown_set_and_unknown_field(client):
    files = {"file": ("u.npz", npz(X=np.zeros((2, 103), dtype=np.float32)))}
    assert client.post("/thresholds/9999/adapt", files=files).status_code == 404
    base = tuned_set(client, activate="false")["threshold_set"]["id"]
    response = client.post(f"/thresholds/{base}/adapt", files=files, data={"prior": "0.1"})
    assert response.status_code == 422 and "prior" in response.text


def test_a_softmax_set_is_not_adapted(tmp_path):
    with app_with_adapt(tmp_path / "d", model_dir=DIGITS_MODEL_DIR) as c:
        wait_ready(c)
        files = {"file": ("v.npz", DIGITS_TEST.read_bytes())}
        form = {"objective": "coverage_at_accuracy", "target": "0.99"}
        set_id = c.post("/tune-thresholds", files=files, data=form).json()["threshold_set"]["id"]
        response = c.post(f"/thresholds/{set_id}/adapt", files=files)
        assert response.status_code == 422 and "multi-label" in response.json()["detail"]
