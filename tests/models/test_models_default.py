"""The bundled yeast model: it loads, and it reproduces the metrics recorded at training time."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from labelcut.models import (
    DEFAULT_MODEL_DIR,
    YEAST_TEST,
    YEAST_TRAIN,
    LoadedModel,
    load_model,
    train_default_model,
)
from labelcut.models.files import sha256_file
from labelcut.models.manifest import read_manifest


def _split(path):
    with np.load(path, allow_pickle=False) as data:
        return data["X"], data["Y"], list(data["label_names"]), list(data["feature_names"])


@pytest.fixture(scope="module")
def default_model() -> LoadedModel:
    return load_model(device="cpu")


def test_data_files_are_in_the_package():
    for path in (YEAST_TRAIN, YEAST_TEST):
        assert path.is_file()
        assert path.parent == DEFAULT_MODEL_DIR.parent / "data"
    x, y, _, _ = _split(YEAST_TRAIN)
    assert x.shape == (1500, 103) and y.shape == (1500, 14)
    x, y, _, _ = _split(YEAST_TEST)
    assert x.shape == (917, 103) and y.shape == (917, 14)


def test_default_model_describes_itself(default_model):
    _, _, labels, features = _split(YEAST_TRAIN)
    assert default_model.directory == DEFAULT_MODEL_DIR
    assert default_model.format == "safetensors"
    assert default_model.labels == labels == [f"Class{i}" for i in range(1, 15)]
    assert default_model.feature_names == features == [f"Att{i}" for i in range(1, 104)]
    assert default_model.input_shape == (103,)
    assert default_model.sha256 == sha256_file(DEFAULT_MODEL_DIR / "model.safetensors")
    assert default_model.manifest.standardization is not None


@pytest.mark.parametrize(("split", "path"), [("train", YEAST_TRAIN), ("test", YEAST_TEST)])
def test_default_model_reproduces_its_recorded_f1(default_model, split, path):
    x, y, _, _ = _split(path)
    predicted = default_model.predict_proba(x) >= 0.5
    recorded = default_model.metrics[split]
    assert recorded["n"] == len(x)
    micro = f1_score(y, predicted, average="micro", zero_division=0)
    macro = f1_score(y, predicted, average="macro", zero_division=0)
    assert micro == pytest.approx(recorded["micro_f1"], abs=1e-6)
    assert macro == pytest.approx(recorded["macro_f1"], abs=1e-6)
    if split == "test":
        assert 0.60 <= micro <= 0.70  # yeast's usual range for a small MLP


def test_standardisation_stats_come_from_the_train_split(default_model):
    x, _, _, _ = _split(YEAST_TRAIN)
    standardization = default_model.manifest.standardization
    np.testing.assert_allclose(standardization.mean, x.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(standardization.std, x.std(axis=0), rtol=1e-5)


def test_concurrent_calls_from_threads_agree(default_model):
    x, _, _, _ = _split(YEAST_TEST)
    expected = default_model.predict_proba(x)
    results: list[np.ndarray] = [None] * 8  # type: ignore[list-item]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = default_model.predict_proba(x, batch_size=64 + i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6, rtol=0)


def test_training_is_seeded_and_records_what_it_reports(tmp_path):
    first = train_default_model(tmp_path / "one", epochs=2, verbose=False)
    second = train_default_model(tmp_path / "two", epochs=2, verbose=False)
    assert first["sha256"] == second["sha256"]
    manifest = read_manifest(tmp_path / "one")
    assert manifest.metrics["test"] == first["test"]
    assert manifest.metrics["train"] == first["train"]
    assert manifest.training["epochs"] == 2
    assert manifest.training["seed"] == 0
    other = train_default_model(tmp_path / "three", epochs=2, seed=1, verbose=False)
    assert other["sha256"] != first["sha256"]
    before = torch.random.get_rng_state()
    train_default_model(tmp_path / "four", epochs=1, verbose=False)
    assert torch.equal(before, torch.random.get_rng_state())  # global RNG left alone


def test_train_command_prints_the_figures(tmp_path, capsys):
    from labelcut.models.train import main

    assert main(["--out", str(tmp_path / "b"), "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train (n=1500): macro-F1" in printed
    assert "test (n=917): macro-F1" in printed
    assert "micro-F1" in printed
