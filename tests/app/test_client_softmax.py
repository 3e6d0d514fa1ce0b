"""labelcut.Client on a softmax bundle (issue 15), against a real `labelcut serve`.

The oracle is the bundle loaded here: softmax probabilities, their argmax, and
abstention where the top probability is below the request's confidence threshold.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from labelcut import Client
from labelcut.models import DIGITS_MODEL_DIR, DIGITS_TEST, load_model

from ..support.server import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("client-softmax") / "data", "--model", str(DIGITS_MODEL_DIR))
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def test_client_predicts_argmax_and_abstains_below_the_threshold(server):
    model = load_model(DIGITS_MODEL_DIR, device="cpu")
    with np.load(DIGITS_TEST, allow_pickle=False) as z:
        x = z["X"][:40].astype(np.float32)
    expected = model.predict_proba(x)
    top = expected.max(axis=1)
    cut = float(np.quantile(top, 0.3))  # some rows answer, some abstain
    with Client(server.url) as lc:
        plain = lc.predict(x)
        guarded = lc.predict(x, threshold=cut)
    np.testing.assert_allclose(plain.proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(plain.proba, expected, atol=1e-5)
    names = plain.label_names
    assert plain.labels == [[names[i]] for i in expected.argmax(axis=1)]
    assert plain.decision_rule == "exactly_one" and plain.uncertain is None
    assert guarded.threshold == pytest.approx(cut)
    want = [[names[int(np.argmax(p))]] if p.max() >= cut else [] for p in expected]
    assert guarded.labels == want
    assert any(not row for row in guarded.labels) and any(guarded.labels)
