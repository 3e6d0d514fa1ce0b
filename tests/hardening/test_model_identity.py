"""Issue 12 item 11: a set belongs to a model by its weights *and* its labels in order.

Against real servers on one data directory: the bundled model tunes and activates a set;
the same weights with the manifest's labels reordered (or one renamed) must not apply it
(the log says why), cannot activate it (409), and predict with 0.5; the original model,
started again, still has its set.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from labelcut.models import DEFAULT_MODEL_DIR

from ..support.server import Server

pytestmark = [pytest.mark.e2e]

ROW = {"inputs": [[0.0] * 103]}


def bundle_with_labels(tmp_path: Path, name: str, edit) -> Path:
    """A copy of the bundled model (same weights file, same sha256) with edited labels."""
    out = tmp_path / name
    shutil.copytree(DEFAULT_MODEL_DIR, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["labels"] = edit(list(manifest["labels"]))
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def start(data_dir: Path, *extra: str) -> Server:
    return Server(data_dir, *extra, env={"LABELCUT_LOG_LEVEL": "info"}).wait_ready()


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda labels: labels[::-1], "in another order"),
        (lambda labels: labels[1:] + labels[:1], "in another order"),
        (lambda labels: [*labels[:-1], "Renamed14"], "only in the set"),
    ],
    ids=["reversed", "rotated", "renamed"],
)
def test_same_weights_other_labels_never_get_the_set(tmp_path, yeast_npz_bytes, edit, needle):
    data_dir = tmp_path / "data"
    original = start(data_dir)
    try:
        tuned = httpx.post(
            original.url + "/tune-thresholds",
            files={"file": ("v.npz", yeast_npz_bytes)},
            data={"n_bootstrap": "0"},
            timeout=120,
        ).json()
        set_id = tuned["threshold_set"]["id"]
        thresholds = tuned["thresholds"]
        sha = httpx.get(original.url + "/model").json()["sha256"]
    finally:
        original.stop()

    other = bundle_with_labels(tmp_path, "reordered", edit)
    server = start(data_dir, "--model", str(other))
    try:
        client = server.client()
        assert client.get("/model").json()["sha256"] == sha  # same weights
        active = client.get("/thresholds").json()
        assert active["threshold_set"] is None
        assert set(active["thresholds"].values()) == {0.5}
        assert client.post("/predict", json=ROW).json()["threshold_set_id"] is None
        log = server.log.read_text()
        assert f"Not applying threshold set {set_id}" in log and needle in log, log[-2000:]
        refused = client.post(f"/thresholds/{set_id}/activate")
        assert refused.status_code == 409 and needle in refused.json()["detail"]
        assert client.get("/thresholds").json() == active
        own_id = None
        if needle == "in another order":  # the file's label_names are matched by name
            # Its own tune is its own set, which the original model in turn does not get.
            own = client.post(
                "/tune-thresholds",
                files={"file": ("v.npz", yeast_npz_bytes)},
                data={"n_bootstrap": "0"},
            )
            assert own.status_code == 200, own.text
            own_id = own.json()["threshold_set"]["id"]
            assert client.post("/predict", json=ROW).json()["threshold_set_id"] == own_id
    finally:
        server.stop()

    again = start(data_dir)
    try:
        back = again.client().get("/thresholds").json()
        assert back["threshold_set"]["id"] == set_id and back["thresholds"] == thresholds
        if own_id is not None:
            assert again.client().post(f"/thresholds/{own_id}/activate").status_code == 409
    finally:
        again.stop()
