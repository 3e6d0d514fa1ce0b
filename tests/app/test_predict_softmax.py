"""Issue 15: /predict on a softmax bundle, against a real `labelcut serve --model models/digits`.

The oracle is the bundle loaded here with `load_model` and plain numpy: softmax
probabilities (rows sum to 1), their argmax, and abstention where the top probability is
below the confidence threshold (the request's `threshold`, else the active set's).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest

from labelcut.models import DIGITS_MODEL_DIR, DIGITS_TEST, load_model

from ..support.server import Server
from .stored_sets import store_set

ROWS = 60


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    model = load_model(DIGITS_MODEL_DIR, device="cpu")
    with np.load(DIGITS_TEST, allow_pickle=False) as z:
        x, y = z["X"][:ROWS].astype(np.float32), z["Y"][:ROWS]
    return {"X": x, "Y": y, "proba": model.predict_proba(x), "model": model}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("softmax") / "data", "--model", str(DIGITS_MODEL_DIR))
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def _store_confidence_set(server: Server, digits: dict, confidence: float) -> int:
    """A softmax set as SPEC-wave2 stores it (thresholds [t] * C), not activated."""
    model = digits["model"]
    return store_set(
        server.data_dir,
        model,
        digits["proba"],
        digits["Y"],
        np.full(len(model.labels), confidence),
        {
            "activation": "softmax",
            "decision_rule": "exactly_one",
            "confidence_threshold": confidence,
        },
        objective="coverage_at_accuracy",
    )


def _answers(body: dict) -> list[list[str]]:
    return [p["labels"] for p in body["predictions"]]


def _oracle(proba: np.ndarray, threshold: float, labels: list[str]) -> list[list[str]]:
    top = proba.max(axis=1).astype(np.float64)
    best = np.argmax(proba, axis=1)
    return [[labels[b]] if t >= threshold else [] for b, t in zip(best, top, strict=True)]


def test_probabilities_sum_to_one_and_labels_are_the_argmax(server, digits):
    labels = digits["model"].labels
    with server.client() as c:
        r = c.post("/predict", json={"inputs": digits["X"].tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision_rule"] == "exactly_one" and body["threshold"] == 0.0
    scores = np.array([[p["scores"][label] for label in labels] for p in body["predictions"]])
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scores, digits["proba"], atol=1e-6)
    expected = [[labels[i]] for i in np.argmax(digits["proba"], axis=1)]
    assert _answers(body) == expected


def test_request_threshold_abstains_below_the_top_probability(server, digits):
    labels = digits["model"].labels
    top = digits["proba"].max(axis=1)
    # Between two distinct top probabilities: some rows answer, some abstain.
    t = float(np.sort(top)[ROWS // 3]) + 1e-9
    with server.client() as c:
        body = c.post("/predict", json={"inputs": digits["X"].tolist(), "threshold": t}).json()
    answers = _answers(body)
    assert answers == _oracle(digits["proba"], t, labels)
    assert 0 < sum(a == [] for a in answers) < ROWS
    assert body["threshold"] == t and body["decision_rule"] == "exactly_one"


def test_stored_confidence_threshold_and_the_request_override(server, digits):
    labels = digits["model"].labels
    t = float(np.quantile(digits["proba"].max(axis=1), 0.5))
    set_id = _store_confidence_set(server, digits, t)
    x = digits["X"].tolist()
    with server.client() as c:
        assert c.post(f"/thresholds/{set_id}/activate").status_code == 200
        stored = c.post("/predict", json={"inputs": x}).json()
        always = c.post("/predict", json={"inputs": x, "threshold": 0}).json()
        nothing = c.post("/predict", json={"inputs": x, "threshold": 1 + 2**-10}).json()
        explicit = c.post("/predict", json={"inputs": x, "decision_rule": "exactly_one"}).json()
    assert stored["threshold_set_id"] == set_id and stored["threshold"] == t
    assert _answers(stored) == _oracle(digits["proba"], t, labels)
    assert any(a == [] for a in _answers(stored))
    assert _answers(explicit) == _answers(stored)
    assert _answers(always) == [[labels[i]] for i in np.argmax(digits["proba"], axis=1)]
    assert _answers(nothing) == [[]] * ROWS  # above 1 by 2**-10: predict nothing


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"thresholds": {"3": 0.2}}, "thresholds (per label) do not apply to a softmax"),
        ({"decision_rule": "threshold"}, "decision_rule 'threshold' does not apply"),
        ({"decision_rule": "at_least_one"}, "decision_rule 'at_least_one' does not apply"),
        ({"decision_rule": "top_k", "k": 2}, "decision_rule 'top_k' does not apply"),
        ({"decision_rule": "abstain"}, "decision_rule 'abstain' does not apply"),
        ({"threshold": 1.5}, "threshold is 1.5; it must be in [0, 1]"),
        ({"threshold": -0.1}, "threshold is -0.1; it must be in [0, 1]"),
        ({"threshold": 1 + 2**-9}, "it must be in [0, 1]"),
    ],
)
def test_options_a_softmax_model_cannot_apply_are_422(server, digits, extra, words):
    with server.client() as c:
        r = c.post("/predict", json={"inputs": digits["X"][:2].tolist(), **extra})
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"]


def test_npy_answers_the_softmax_probabilities(server, digits):
    buffer = io.BytesIO()
    np.save(buffer, digits["X"])
    with server.client() as c:
        r = c.post(
            "/predict",
            content=buffer.getvalue(),
            headers={"content-type": "application/x-npy", "accept": "application/x-npy"},
        )
    assert r.status_code == 200, r.text
    proba = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert proba.shape == (ROWS, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba, digits["proba"], atol=1e-6)
