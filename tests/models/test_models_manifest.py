"""Every way a bundle can be broken gives a BundleError naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from labelcut.models import MLP, BundleError, load_model, save_bundle
from labelcut.models.manifest import read_manifest

LABELS = ["a", "b", "c"]
D = 4


@pytest.fixture
def bundle(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_bundle(
        MLP(D, len(LABELS), hidden_sizes=(6,)),
        tmp_path / "b",
        labels=LABELS,
        input_shape=(D,),
        format="safetensors",
        mean=[0.0] * D,
        std=[1.0] * D,
    )


def _edit(bundle: Path, change) -> Path:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


def test_missing_directory(tmp_path):
    with pytest.raises(BundleError, match=r"nowhere: model bundle directory does not exist"):
        load_model(tmp_path / "nowhere")


def test_missing_manifest(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(BundleError, match=r"manifest\.json: missing; a model bundle is"):
        load_model(tmp_path)


def test_a_plain_file_is_not_a_bundle(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07onnx")
    with pytest.raises(BundleError, match=r"model\.onnx: is a file; a model bundle is a directory"):
        load_model(path)


def test_bad_json_names_line_and_column(bundle):
    (bundle / "manifest.json").write_text('{"name": "x",\n  "format": }')
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON \(line 2, column 13"):
        load_model(bundle)


def test_manifest_must_be_an_object(bundle):
    (bundle / "manifest.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match="expected a JSON object, got list"):
        load_model(bundle)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format="onnx"), "field 'format' is 'onnx', which is not a known"),
        (lambda m: m.update(schema_version=2), "field 'schema_version' is 2"),
        (lambda m: m.pop("labels"), "field 'labels' is missing"),
        (lambda m: m.update(labels=[]), "field 'labels'"),
        (lambda m: m.update(labels=["a", "a", "b"]), "field 'labels': names must be unique"),
        (lambda m: m.update(input_shape=[0]), "field 'input_shape': every dimension"),
        (lambda m: m.update(input_shape="4"), "field 'input_shape'"),
        (lambda m: m.update(input_dtype="int8"), "field 'input_dtype'"),
        (lambda m: m.update(feature_names=["x"]), "feature_names has 1 names"),
        (lambda m: m["weights"].update(sha256="abc"), "field 'weights.sha256'"),
        (lambda m: m["weights"].update(file="../model.safetensors"), "field 'weights.file'"),
        (lambda m: m.pop("architecture"), "architecture is required for format 'safetensors'"),
        (lambda m: m["architecture"].update(name="resnet"), "field 'architecture.name'"),
        (lambda m: m["standardization"].update(std=[0.0] * D), "std must be positive"),
        (lambda m: m["standardization"].update(mean=[0.0] * 3), "does not broadcast"),
        (lambda m: m.update(colour="blue"), "field 'colour': Extra inputs are not permitted"),
    ],
)
def test_manifest_field_errors_name_the_file_and_field(bundle, change, message):
    path = _edit(bundle, change)
    with pytest.raises(BundleError, match=message) as caught:
        read_manifest(bundle)
    assert str(caught.value).startswith(f"{path}: ")


def test_missing_weights_file(bundle):
    (bundle / "model.safetensors").unlink()
    with pytest.raises(BundleError, match=r"model\.safetensors: weights file named in .* missing"):
        load_model(bundle)


def test_state_dict_with_wrong_shapes(bundle):
    _edit(bundle, lambda m: m["architecture"]["config"].update(hidden_sizes=[7]))
    pattern = r"model\.safetensors: the state dict does not match.*wrong shapes \(net\.0\.weight"
    with pytest.raises(BundleError, match=pattern):
        load_model(bundle)


def test_state_dict_with_missing_tensors(bundle):
    _edit(bundle, lambda m: m["architecture"]["config"].update(hidden_sizes=[6, 6]))
    with pytest.raises(BundleError, match=r"missing tensors \['net\.6\.bias', 'net\.6\.weight'\]"):
        load_model(bundle)


def test_architecture_config_that_cannot_be_built(bundle):
    _edit(bundle, lambda m: m["architecture"]["config"].update(dropout=3))
    with pytest.raises(BundleError, match=r"architecture 'mlp' cannot be built .* dropout"):
        load_model(bundle)


def test_declared_format_must_match_the_file(bundle):
    _edit(bundle, lambda m: m.update(format="export", architecture=None) or m.pop("architecture"))
    with pytest.raises(
        BundleError, match="declares format 'export' but the file is a 'safetensors'"
    ):
        load_model(bundle)


def test_garbage_weights_are_refused(bundle):
    import hashlib

    content = b"not a model at all"
    (bundle / "model.safetensors").write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    _edit(bundle, lambda m: m["weights"].update(sha256=digest))
    with pytest.raises(BundleError, match="the file is an unrecognised file"):
        load_model(bundle)


def test_warm_up_failure_names_the_weights_file(tmp_path):
    # input_shape in the manifest disagrees with what the program accepts.
    torch.manual_seed(0)
    bundle = save_bundle(
        torch.nn.Linear(D, len(LABELS)), tmp_path / "b", labels=LABELS, input_shape=(D,)
    )
    _edit(bundle, lambda m: m.update(input_shape=[D + 1]))
    with pytest.raises(BundleError, match=r"model\.pt2: the model failed on a warm-up batch"):
        load_model(bundle)
