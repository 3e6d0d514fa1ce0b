"""Save -> load round trips for every format, and the LoadedModel input/output rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from labelcut.models import MLP, BundleError, LoadedModel, load_model, save_bundle
from labelcut.models.formats import WEIGHTS_FILE_NAMES

LABELS = ["a", "b", "c"]
D = 5


class TwoBranch(nn.Module):
    """Not a built-in architecture: only export and TorchScript can carry it."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Linear(D, 3)
        self.right = nn.Sequential(nn.Linear(D, 7), nn.Tanh(), nn.Linear(7, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left(x) + self.right(x) * 0.5


class BatchSpecific(nn.Module):
    """Scales by the batch size as a Python float, which tracing freezes into a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * float(x.shape[0])


def _mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(D, len(LABELS), hidden_sizes=(8, 4), dropout=0.2).eval()


def _rows(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


def _reference(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(module.eval()(torch.from_numpy(x))).numpy()


@pytest.mark.parametrize(
    ("fmt", "make"),
    [
        ("safetensors", _mlp),
        ("export", _mlp),
        ("export", TwoBranch),
        ("torchscript", _mlp),
        ("torchscript", TwoBranch),
    ],
)
def test_every_format_round_trips(tmp_path, fmt, make):
    module = make()
    path = save_bundle(module, tmp_path / "b", labels=LABELS, input_shape=(D,), format=fmt)
    model = load_model(path, device="cpu")
    x = _rows(37)
    np.testing.assert_allclose(model.predict_proba(x), _reference(module, x), atol=1e-6, rtol=0)
    assert model.format == fmt
    assert model.labels == LABELS
    assert model.input_shape == (D,)
    assert model.name == "b"
    assert model.version == "1"
    assert model.device == torch.device("cpu")
    assert model.dtype == torch.float32
    assert model.directory == path
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["manifest.json", WEIGHTS_FILE_NAMES[fmt]]
    )


def test_export_bundle_accepts_any_batch_size_including_one(tmp_path):
    module = TwoBranch()
    model = load_model(save_bundle(module, tmp_path / "b", labels=LABELS, input_shape=(D,)))
    for n in (1, 2, 3, 1000):
        x = _rows(n)
        np.testing.assert_allclose(model.predict_proba(x), _reference(module, x), atol=1e-6)


def test_manifest_records_what_was_saved(tmp_path):
    path = save_bundle(
        _mlp(),
        tmp_path / "b",
        labels=LABELS,
        input_shape=[D],
        format="safetensors",
        name="tiny",
        version="7",
        feature_names=[f"f{i}" for i in range(D)],
    )
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["name"] == "tiny"
    assert manifest["version"] == "7"
    assert manifest["format"] == "safetensors"
    assert manifest["input_shape"] == [D]
    assert manifest["input_dtype"] == "float32"
    assert manifest["weights"]["file"] == "model.safetensors"
    assert len(manifest["weights"]["sha256"]) == 64
    assert manifest["architecture"] == {
        "name": "mlp",
        "config": {"input_size": D, "num_labels": 3, "hidden_sizes": [8, 4], "dropout": 0.2},
    }
    model = load_model(path)
    assert model.feature_names == [f"f{i}" for i in range(D)]
    assert model.sha256 == manifest["weights"]["sha256"]


def test_saving_again_in_another_format_replaces_the_weights_file(tmp_path):
    target = tmp_path / "b"
    save_bundle(_mlp(), target, labels=LABELS, input_shape=(D,), format="torchscript")
    save_bundle(_mlp(), target, labels=LABELS, input_shape=(D,), format="safetensors")
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "model.safetensors"]
    assert load_model(target).format == "safetensors"


def test_save_bundle_leaves_the_callers_module_untouched(tmp_path):
    module = _mlp().train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    save_bundle(module, tmp_path / "b", labels=LABELS, input_shape=(D,), format="export")
    assert module.training
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key])


def test_safetensors_needs_a_builtin_architecture(tmp_path):
    with pytest.raises(ValueError, match="built-in architecture"):
        save_bundle(
            TwoBranch(), tmp_path / "b", labels=LABELS, input_shape=(D,), format="safetensors"
        )


def test_safetensors_with_an_explicit_architecture_for_a_compatible_module(tmp_path):
    class Wrapped(nn.Module):  # same state dict keys as MLP, different class
        def __init__(self, inner: MLP) -> None:
            super().__init__()
            self.net = inner.net

        def forward(self, x):
            return self.net(x)

    inner = _mlp()
    config = inner.architecture_config()
    path = save_bundle(
        Wrapped(inner),
        tmp_path / "b",
        labels=LABELS,
        input_shape=(D,),
        format="safetensors",
        architecture={"name": "mlp", "config": config},
    )
    x = _rows(9)
    np.testing.assert_allclose(load_model(path).predict_proba(x), _reference(inner, x), atol=1e-6)
    wrong = {"name": "mlp", "config": {**config, "hidden_sizes": [9]}}
    with pytest.raises(ValueError, match="does not fit architecture 'mlp'"):
        save_bundle(
            Wrapped(inner),
            tmp_path / "c",
            labels=LABELS,
            input_shape=(D,),
            format="safetensors",
            architecture=wrong,
        )


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_a_trace_that_does_not_generalise_is_caught_at_save_time(tmp_path):
    with pytest.raises(BundleError, match="torchscript file does not reproduce the module"):
        save_bundle(
            BatchSpecific(), tmp_path / "b", labels=LABELS, input_shape=(D,), format="torchscript"
        )
    assert not (tmp_path / "b" / "manifest.json").exists()
    assert not list((tmp_path / "b").glob(".tmp-*"))


def test_save_bundle_checks_the_output_width_against_labels(tmp_path):
    with pytest.raises(BundleError, match=r"expected \(16, 4\) for 4 labels"):
        save_bundle(_mlp(), tmp_path / "b", labels=[*LABELS, "d"], input_shape=(D,))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "onnx"}, "format must be one of"),
        ({"labels": []}, "labels must not be empty"),
        ({"labels": ["a", "a", "b"]}, "labels must be unique"),
        ({"labels": "abc"}, "labels must be a list"),
        ({"input_shape": (0,)}, "input_shape must be"),
        ({"input_shape": ()}, "input_shape must be"),
        ({"mean": [0.0] * D}, "mean and std must be given together"),
        ({"mean": [0.0] * D, "std": [0.0] * D}, "std must be positive"),
        ({"mean": [0.0] * 4, "std": [1.0] * 4}, "does not broadcast"),
        ({"feature_names": ["x"]}, "feature_names"),
    ],
)
def test_save_bundle_rejects_bad_arguments(tmp_path, kwargs, message):
    arguments = {"labels": LABELS, "input_shape": (D,), **kwargs}
    with pytest.raises(ValueError, match=message):
        save_bundle(_mlp(), tmp_path / "b", **arguments)


def test_save_bundle_refuses_a_file_as_directory(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        save_bundle(_mlp(), target, labels=LABELS, input_shape=(D,))


@pytest.mark.parametrize("fmt", ["safetensors", "export", "torchscript"])
def test_standardisation_from_the_manifest_is_applied_inside(tmp_path, fmt):
    module = _mlp()
    mean = np.linspace(-1.0, 1.0, D).astype(np.float32)
    std = np.linspace(0.5, 2.0, D).astype(np.float32)
    path = save_bundle(
        module, tmp_path / "b", labels=LABELS, input_shape=(D,), format=fmt, mean=mean, std=std
    )
    x = _rows(11) * 3 + 2
    expected = _reference(module, (x - mean) / std)
    np.testing.assert_allclose(load_model(path).predict_proba(x), expected, atol=1e-6)


def test_logits_and_probabilities_agree(tmp_path):
    module = _mlp()
    model = load_model(
        save_bundle(module, tmp_path / "b", labels=LABELS, input_shape=(D,), format="safetensors")
    )
    x = _rows(13)
    with torch.no_grad():
        logits = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict_logits(x), logits, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(x), 1 / (1 + np.exp(-logits)), atol=1e-6)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> LoadedModel:
    directory = tmp_path_factory.mktemp("tiny") / "b"
    return load_model(
        save_bundle(_mlp(), directory, labels=LABELS, input_shape=(D,), format="safetensors")
    )


def test_numpy_in_numpy_float32_out(tiny_model):
    for dtype in (np.float32, np.float64, np.int64):
        out = tiny_model.predict_proba(_rows(4).astype(dtype))
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.float32
        assert out.shape == (4, 3)
    assert tiny_model.predict_proba(_rows(4).tolist()).shape == (4, 3)


def test_tensor_in_tensor_float32_out_on_the_inputs_device(tiny_model):
    x = _rows(6)
    for dtype in (torch.float32, torch.float64, torch.float16):
        out = tiny_model.predict_proba(torch.from_numpy(x).to(dtype))
        assert isinstance(out, torch.Tensor)
        assert out.dtype == torch.float32
        assert out.device == torch.device("cpu")
    np.testing.assert_array_equal(
        tiny_model.predict_proba(torch.from_numpy(x)).numpy(), tiny_model.predict_proba(x)
    )
    grad_input = torch.from_numpy(x).requires_grad_(True)
    out = tiny_model.predict_logits(grad_input)
    out[out < 0] = 0  # the result is an ordinary tensor, writable outside inference mode
    assert not out.requires_grad


def test_batching_gives_the_same_answer_as_one_pass(tiny_model):
    x = _rows(1001)
    whole = tiny_model.predict_proba(x, batch_size=len(x))
    for batch_size in (1, 7, 256, 5000):
        np.testing.assert_allclose(
            tiny_model.predict_proba(x, batch_size=batch_size), whole, atol=1e-6, rtol=0
        )


def test_batches_are_bounded_by_batch_size(tiny_model, monkeypatch):
    seen: list[int] = []
    forward = tiny_model._module

    def spy(batch):
        seen.append(batch.shape[0])
        return forward(batch)

    monkeypatch.setattr(tiny_model, "_module", spy)
    tiny_model.predict_proba(_rows(10), batch_size=4)
    assert seen == [4, 4, 2]
    seen.clear()
    tiny_model.predict_proba(_rows(tiny_model.default_batch_size + 3))
    assert seen == [tiny_model.default_batch_size, 3]


def test_zero_rows_give_an_empty_result(tiny_model):
    assert tiny_model.predict_proba(np.zeros((0, D), np.float32)).shape == (0, 3)
    assert tiny_model.predict_logits(torch.zeros(0, D)).shape == (0, 3)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((4, D + 1), np.float32), r"x must have shape \(n, 5\) .* got \(4, 6\)"),
        (np.zeros((2, 1, D), np.float32), r"got \(2, 1, 5\)"),
        (np.zeros(D, np.float32), r"For a single row, add the batch dimension"),
        (np.array([["a"] * D]), "x must hold real numbers"),
        (torch.zeros(2, D, dtype=torch.bool), "x must hold real numbers"),
        (torch.zeros(2, D, dtype=torch.complex64), "x must hold real numbers"),
    ],
)
def test_bad_inputs_are_refused(tiny_model, x, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.predict_proba(x)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "8"])
def test_bad_batch_size_is_refused(tiny_model, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        tiny_model.predict_proba(_rows(2), batch_size=batch_size)


def test_multi_dimensional_input_shape(tmp_path):
    module = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3, 4))
    path = save_bundle(
        module,
        tmp_path / "b",
        labels=list("wxyz"),
        input_shape=(2, 3),
        mean=[0.0, 1.0, 2.0],
        std=[1.0, 2.0, 4.0],
    )
    model = load_model(path)
    x = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
    mean, std = np.float32([0, 1, 2]), np.float32([1, 2, 4])
    expected = _reference(module, (x - mean) / std)
    np.testing.assert_allclose(model.predict_proba(x), expected, atol=1e-6)
    assert model.input_shape == (2, 3)
