"""`labelcut serve --model models/digits` answers with softmax probabilities (real server)."""

from __future__ import annotations

import numpy as np
import pytest

from labelcut.models import DIGITS_MODEL_DIR, DIGITS_TEST, load_model
from labelcut.models.digits import load_digits_split

from ..support.server import Server

pytestmark = pytest.mark.e2e


def test_the_digits_bundle_is_served_as_softmax_probabilities(tmp_path):
    x, y = load_digits_split(DIGITS_TEST)
    expected = load_model(DIGITS_MODEL_DIR, device="cpu").predict_proba(x[:20])
    server = Server(tmp_path / "data", "--model", str(DIGITS_MODEL_DIR)).wait_ready()
    try:
        with server.client() as client:
            info = client.get("/model").json()
            assert info["labels"] == [str(d) for d in range(10)]
            answer = client.post("/predict", json={"inputs": x[:20].tolist()})
            assert answer.status_code == 200, answer.text
            rows = answer.json()["predictions"]
    finally:
        server.stop()
    scores = np.array([[row["scores"][str(d)] for d in range(10)] for row in rows])
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)
    assert np.allclose(scores, expected, atol=1e-4)
    assert (scores.argmax(axis=1) == y[:20]).mean() >= 0.9
