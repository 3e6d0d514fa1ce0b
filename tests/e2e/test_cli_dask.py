"""`labelcut tune DATASET --engine dask|local` as a user (and the outside check) runs it:
the installed console script in a subprocess, on a Parquet dataset written here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labelcut import tuning
from labelcut.app.routes.push import PushedReport
from labelcut.models import DEFAULT_MODEL_DIR, YEAST_TEST, load_model

from ..support.parquet_sets import columns_table, write_dataset

pytestmark = pytest.mark.e2e

LABELS = ["cat", "dog", "bird", "fish"]
LABELCUT = str(Path(sys.executable).with_name("labelcut"))


def _labelcut(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LABELCUT, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def _rows(n: int = 3000, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, len(LABELS))) < [0.4, 0.2, 0.1, 0.05]).astype(np.uint8)
    scores = np.clip(0.35 * targets + rng.random(targets.shape) * 0.65, 0, 1)
    return scores.astype(np.float32), targets


def test_tune_dir_on_dask_writes_the_in_memory_thresholds(tmp_path):
    scores, targets = _rows()
    write_dataset(
        tmp_path / "set", columns_table(targets, LABELS, scores=scores), cuts=[700, 1400, 2600]
    )
    done = _labelcut(
        "tune", "set", "--engine", "dask", "--strategy", "per_label", "--n-bootstrap", "0",
        "--out", "result.json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "pass 1/" in done.stderr and "partition" in done.stderr  # the progress bar
    for label in LABELS:
        assert label in done.stdout
    report = json.loads((tmp_path / "result.json").read_text())
    expected = tuning.tune_thresholds(
        scores, targets, strategy="per_label", n_bootstrap=0, label_names=LABELS
    )
    assert list(report["thresholds"]) == LABELS
    np.testing.assert_array_equal(
        [report["thresholds"][label] for label in LABELS], expected.thresholds
    )
    assert report["n_samples"] == len(scores)
    assert report["decision_rule"] == "threshold" and report["curves"]
    PushedReport.model_validate(report)  # what `labelcut push` sends is accepted


def test_tune_dir_of_features_on_the_local_engine_with_the_bundled_model(tmp_path):
    model = load_model(device="cpu")
    with np.load(YEAST_TEST) as z:
        features, targets = z["X"], z["Y"]
    table = columns_table(
        targets, model.labels, features=features, feature_names=model.feature_names
    )
    write_dataset(tmp_path / "set", table, cuts=[])
    done = _labelcut(
        "tune", "set", "--engine", "local", "--model", str(DEFAULT_MODEL_DIR), "--device", "cpu",
        "--strategy", "shrunk", "--out", "result.json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "result.json").read_text())
    # One file, one partition, one batch of rows per model call as `labelcut tune FILE`.
    expected = tuning.tune_thresholds(model.predict_proba(features), targets, strategy="shrunk")
    got = [report["thresholds"][label] for label in model.labels]
    np.testing.assert_allclose(got, expected.thresholds, rtol=1e-6)
    assert report["model"]["sha256"] == model.sha256


def test_a_bad_value_read_on_a_worker_is_one_line_and_exit_2(tmp_path):
    scores, targets = _rows(n=400)
    scores[350, 1] = 1.25
    write_dataset(tmp_path / "set", columns_table(targets, LABELS, scores=scores), cuts=[200])
    done = _labelcut("tune", "set", "--engine", "dask", "--n-bootstrap", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr  # quiet workers
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("labelcut tune: bad dataset:")
    assert "'score:dog'" in last and "row 151 of file" in last and "part-001.parquet" in last


def test_bad_datasets_and_flags_exit_2_without_a_traceback(tmp_path):
    scores, targets = _rows(n=100)
    table = columns_table(targets, LABELS, scores=scores)
    write_dataset(tmp_path / "nolabel", table.drop_columns(["bird"]), cuts=[])
    cases = {
        ("tune", "missing", "--engine", "dask"): "does not exist",
        ("tune", "nolabel", "--engine", "dask"): "no column for label(s) ['bird']",
        ("tune", "nolabel", "--engine", "local", "--scheduler", "tcp://127.0.0.1:1"): "--scheduler",
        ("tune", str(YEAST_TEST), "--mode", "exact"): "--mode applies to --engine local or dask",
    }
    for args, message in cases.items():
        done = _labelcut(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert message in done.stderr, (args, done.stderr)
