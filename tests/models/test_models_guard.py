"""The output contract (activation, outputs) and the guard against activations inside modules.

Every case runs in all three bundle formats. Export and TorchScript take any
module; safetensors takes only built-in architectures, so there the "activation
inside" is an MLP whose last layer is constant: every output 0.5 (in [0, 1], like
a sigmoid) or 1/C per row (sums to 1, like a softmax).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from labelcut.models import DEFAULT_MODEL_DIR, MLP, BundleError, load_model, save_bundle
from labelcut.models.export import main as export_main
from labelcut.models.files import sha256_file

D, C = 4, 3
LABELS = ["a", "b", "c"]
FORMATS = ["safetensors", "export", "torchscript"]
ROWS = np.random.default_rng(1).normal(size=(20, D)).astype(np.float32)


class Head(nn.Module):
    """A linear layer followed by ``inside``: None (logits), "sigmoid" or "softmax"."""

    def __init__(self, inside: str | None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(D, C)
        with torch.no_grad():
            self.linear.weight.mul_(3.0)  # logits well spread over both signs
        self.inside = inside

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        if self.inside == "sigmoid":
            return torch.sigmoid(z)
        if self.inside == "softmax":
            return torch.softmax(z, dim=1)
        return z


def _constant_mlp(value: float) -> MLP:
    model = MLP(D, C, hidden_sizes=(5,))
    with torch.no_grad():
        model.net[-1].weight.zero_()
        model.net[-1].bias.fill_(value)
    return model


def _module(fmt: str, inside: str | None) -> nn.Module:
    if fmt != "safetensors":
        return Head(inside)
    if inside is None:
        torch.manual_seed(0)
        model = MLP(D, C, hidden_sizes=(5,))
        with torch.no_grad():
            model.net[-1].weight.mul_(4.0)
            model.net[-1].bias.fill_(-2.0)  # logits mostly negative, some above 1
        return model
    return _constant_mlp(0.5 if inside == "sigmoid" else 1.0 / C)


def _save(fmt: str, inside: str | None, path: Path, **kwargs) -> Path:
    return save_bundle(
        _module(fmt, inside), path, labels=LABELS, input_shape=(D,), format=fmt, **kwargs
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_logits_are_accepted_and_served_through_the_declared_activation(fmt, tmp_path):
    sig = load_model(_save(fmt, None, tmp_path / "sig"), device="cpu")
    soft = load_model(_save(fmt, None, tmp_path / "soft", activation="softmax"), device="cpu")
    assert (sig.activation, sig.outputs) == ("sigmoid", "logits")
    assert (soft.activation, soft.outputs) == ("softmax", "logits")
    logits = sig.predict_logits(ROWS)
    assert np.allclose(soft.predict_logits(ROWS), logits, atol=1e-6)
    assert np.allclose(sig.predict_proba(ROWS), 1 / (1 + np.exp(-logits)), atol=1e-6)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    proba = soft.predict_proba(ROWS)
    assert np.allclose(proba, expected, atol=1e-6)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    tensor = soft.predict_proba(torch.from_numpy(ROWS))
    assert isinstance(tensor, torch.Tensor) and torch.allclose(tensor, torch.from_numpy(expected))
    manifest = json.loads((tmp_path / "soft" / "manifest.json").read_text())
    assert (manifest["activation"], manifest["outputs"]) == ("softmax", "logits")


@pytest.mark.parametrize("fmt", FORMATS)
def test_sigmoid_inside_is_refused_at_save(fmt, tmp_path):
    with pytest.raises(BundleError) as caught:
        _save(fmt, "sigmoid", tmp_path / "b")
    message = str(caught.value)
    assert "all lie in [" in message and "rows x 3 labels" in message
    assert "activation (e.g. a sigmoid) inside the module" in message
    assert "return logits" in message and "outputs='probabilities'" in message
    assert "softmax inside" not in message
    assert not (tmp_path / "b" / "manifest.json").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_softmax_inside_is_refused_with_the_softmax_message(fmt, tmp_path):
    with pytest.raises(BundleError, match="every row sums to 1: this looks like a softmax inside"):
        _save(fmt, "softmax", tmp_path / "b", activation="softmax")
    with pytest.raises(BundleError, match="softmax inside the module"):
        _save(fmt, "softmax", tmp_path / "c")  # declared sigmoid: still named as a softmax


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("inside", ["sigmoid", "softmax"])
def test_declared_probabilities_pass_and_are_served_as_they_are(fmt, inside, tmp_path):
    activation = "softmax" if inside == "softmax" else "sigmoid"
    path = _save(fmt, inside, tmp_path / "b", activation=activation, outputs="probabilities")
    model = load_model(path, device="cpu")
    assert (model.activation, model.outputs) == (activation, "probabilities")
    raw = model.predict_logits(ROWS)
    assert np.array_equal(model.predict_proba(ROWS), raw)
    assert raw.min() >= 0.0 and raw.max() <= 1.0
    if inside == "softmax":
        assert np.allclose(raw.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("fmt", FORMATS)
def test_declared_probabilities_that_are_logits_are_refused(fmt, tmp_path):
    with pytest.raises(BundleError, match="declares outputs='probabilities' but the module"):
        _save(fmt, None, tmp_path / "b", outputs="probabilities")
    with pytest.raises(BundleError, match="rows do not sum to 1"):
        _save(fmt, "sigmoid", tmp_path / "c", activation="softmax", outputs="probabilities")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("inside", ["sigmoid", "softmax"])
def test_the_guard_runs_at_load(fmt, inside, tmp_path):
    # A bundle that declared probabilities, edited to claim logits: load must refuse it.
    path = _save(fmt, inside, tmp_path / "b", outputs="probabilities")
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["outputs"] = "logits"
    manifest_path.write_text(json.dumps(manifest))
    expected = "softmax inside the module" if inside == "softmax" else "a sigmoid"
    with pytest.raises(BundleError, match=expected) as caught:
        load_model(path, device="cpu")
    assert str(path / manifest["weights"]["file"]) in str(caught.value)
    load_model(path, device="cpu", warmup=False)  # the guard is part of the warm-up


class BoundedOnNoise(nn.Module):
    """Outputs in (0, 1) on standard-normal rows, above 1 on rows with large features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(D, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x)) + torch.relu(x.sum(dim=1, keepdim=True) - 50.0)


def test_example_rows_join_the_guard_and_are_stored_checked(tmp_path):
    # Without examples the guard sees only random rows, where this module looks squashed.
    with pytest.raises(BundleError, match="inside the module"):
        save_bundle(BoundedOnNoise(), tmp_path / "a", labels=LABELS, input_shape=(D,))
    examples = np.full((8, D), 30.0, dtype=np.float32)
    path = save_bundle(
        BoundedOnNoise(), tmp_path / "b", labels=LABELS, input_shape=(D,), examples=examples
    )
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["examples"]["rows"] == 8
    assert manifest["examples"]["sha256"] == sha256_file(path / "examples.npy")
    model = load_model(path, device="cpu")
    assert np.array_equal(model.examples, examples)
    np.save(path / "examples.npy", examples[:, :] * 0.0)  # tampered after writing
    with pytest.raises(BundleError, match=r"examples\.npy: sha256 mismatch"):
        load_model(path, device="cpu")


def test_bad_contract_arguments_and_manifest_fields(tmp_path):
    with pytest.raises(ValueError, match="activation must be one of sigmoid, softmax"):
        _save("export", None, tmp_path / "a", activation="relu")
    with pytest.raises(ValueError, match="outputs must be one of logits, probabilities"):
        _save("export", None, tmp_path / "a", outputs="scores")
    with pytest.raises(ValueError, match="softmax' needs at least two labels"):
        save_bundle(
            nn.Linear(D, 1), tmp_path / "a", labels=["x"], input_shape=(D,), activation="softmax"
        )
    path = _save("export", None, tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["activation"] = "tanh"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"field 'activation' is 'tanh', which is not a known"):
        load_model(path, device="cpu")


def test_old_manifests_without_the_contract_load_as_sigmoid_logits(tmp_path):
    path = _save("export", None, tmp_path / "b", activation="softmax")
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["activation"], manifest["outputs"]  # as written before the fields existed
    (path / "manifest.json").write_text(json.dumps(manifest))
    model = load_model(path, device="cpu")
    assert (model.activation, model.outputs) == ("sigmoid", "logits")
    logits = model.predict_logits(ROWS)
    assert np.allclose(model.predict_proba(ROWS), 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert load_model(DEFAULT_MODEL_DIR, device="cpu").activation == "sigmoid"


def test_export_cli_writes_the_activation(tmp_path):
    torch.manual_seed(0)
    model = MLP(D, C, hidden_sizes=(5,))
    checkpoint = tmp_path / "ckpt.pt"
    torch.save(model.state_dict(), checkpoint)
    kwargs = json.dumps({"input_size": D, "num_labels": C, "hidden_sizes": [5]})
    code = export_main(
        [
            str(checkpoint),
            str(tmp_path / "out"),
            "--labels",
            "a,b,c",
            "--input-shape",
            str(D),
            "--factory",
            "labelcut.models.architectures:MLP",
            "--factory-kwargs",
            kwargs,
            "--format",
            "safetensors",
            "--activation",
            "softmax",
        ]
    )
    assert code == 0
    loaded = load_model(tmp_path / "out", device="cpu")
    assert loaded.activation == "softmax"
    assert np.allclose(loaded.predict_proba(ROWS).sum(axis=1), 1.0, atol=1e-6)
