"""The bundled multi-class example: models/digits (softmax CNN on 8x8 digits)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from labelcut.models import (
    DIGITS_MODEL_DIR,
    DIGITS_TEST,
    DIGITS_TRAIN,
    SmallCNN,
    load_model,
    train_digits,
)
from labelcut.models.digits import load_digits_split


@pytest.fixture(scope="module")
def digits():
    return load_model(DIGITS_MODEL_DIR, device="cpu")


def test_the_shipped_data_is_one_class_per_row():
    for path, rows in ((DIGITS_TRAIN, 1257), (DIGITS_TEST, 540)):
        with np.load(path, allow_pickle=False) as data:
            assert data["X"].shape == (rows, 64) and data["X"].dtype == np.float32
            assert data["X"].min() >= 0 and data["X"].max() <= 16
            assert np.array_equal(data["Y"].argmax(axis=1), data["y"])
            assert np.all(data["Y"].sum(axis=1) == 1)
            assert list(data["label_names"]) == [str(d) for d in range(10)]
            assert len(data["feature_names"]) == 64


def test_the_bundle_is_a_softmax_model_that_reproduces_its_metrics(digits):
    assert (digits.activation, digits.outputs, digits.format) == (
        "softmax",
        "logits",
        "safetensors",
    )
    assert digits.labels == [str(d) for d in range(10)] and digits.input_shape == (64,)
    assert digits.examples is not None and digits.examples.shape == (32, 64)
    x, y = load_digits_split(DIGITS_TEST)
    proba = digits.predict_proba(x)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float((proba.argmax(axis=1) == y).mean())
    assert accuracy == pytest.approx(digits.metrics["test"]["accuracy"], abs=1e-9)
    assert accuracy > 0.95
    manifest = json.loads((DIGITS_MODEL_DIR / "manifest.json").read_text())
    assert manifest["training"]["loss"] == "CrossEntropyLoss"


def test_flat_and_image_inputs_give_the_same_logits():
    model = SmallCNN(8, 8, 10)
    x = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    flat = model(torch.from_numpy(x))
    image = model(torch.from_numpy(x).reshape(3, 1, 8, 8))
    assert torch.equal(flat, image) and flat.shape == (3, 10)


def test_train_digits_is_seeded_and_writes_a_loadable_softmax_bundle(tmp_path):
    first = train_digits(tmp_path / "a", epochs=2, verbose=False)
    second = train_digits(tmp_path / "b", epochs=2, verbose=False)
    assert first["sha256"] == second["sha256"]
    model = load_model(tmp_path / "a", device="cpu")
    assert model.activation == "softmax"
    assert 0.0 <= first["test"]["accuracy"] <= 1.0


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [None, "float16", "bfloat16"])
def test_digits_softmax_and_guard_on_cuda(dtype):
    # The guard's rows and the example rows go to the GPU; half precision loosens the
    # sum-to-one tolerance but the bundle must still load and agree with the CPU.
    x, _ = load_digits_split(DIGITS_TEST)
    cpu = load_model(DIGITS_MODEL_DIR, device="cpu").predict_proba(x)
    model = load_model(DIGITS_MODEL_DIR, device="cuda", dtype=dtype)
    out = model.predict_proba(torch.from_numpy(x).cuda())
    assert out.dtype == torch.float32 and out.device.type == "cuda"
    gpu = out.cpu().numpy()
    assert np.allclose(gpu.sum(axis=1), 1.0, atol=1e-3)
    assert np.abs(gpu - cpu).max() < (1e-4 if dtype is None else 0.05)
    assert (gpu.argmax(axis=1) == cpu.argmax(axis=1)).mean() >= 0.99
