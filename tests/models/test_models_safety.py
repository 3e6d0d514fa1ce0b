"""Nothing a user hands over is unpickled, and tampering is detected before loading."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from labelcut.models import BundleError, load_model, save_bundle
from labelcut.models.formats import sniff_weights

LABELS = ["a", "b", "c"]
D = 4


class Payload:
    """Unpickling this object creates the file at ``path`` (a stand-in for any code)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 6), nn.ReLU(), nn.Linear(6, len(LABELS)))


def _torch_save_bytes(obj: object, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def _set_weights(bundle: Path, content: bytes) -> None:
    """Replace the weights file and fix its sha256, so only the format check stands."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / manifest["weights"]["file"]).write_bytes(content)
    manifest["weights"]["sha256"] = hashlib.sha256(content).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_the_payload_is_live(tmp_path):
    # Control: a plain unpickle of the payload does create the file, so the
    # "no file afterwards" assertions below are meaningful.
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize(
    ("file_name", "make"),
    [
        ("model.pt", lambda obj: _torch_save_bytes(obj)),
        ("checkpoint.pth", lambda obj: _torch_save_bytes({"state_dict": {}, "extra": obj})),
        ("legacy.bin", lambda obj: _torch_save_bytes(obj, _use_new_zipfile_serialization=False)),
        ("model.pkl", lambda obj: pickle.dumps(obj, protocol=4)),
        ("weights", lambda obj: pickle.dumps(obj, protocol=2)),  # no suffix: found by its bytes
    ],
)
def test_a_directory_holding_only_a_pickled_checkpoint_is_refused_unopened(
    tmp_path, file_name, make
):
    marker = tmp_path / "pwned"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / file_name).write_bytes(make(Payload(marker)))
    with pytest.raises(BundleError) as caught:
        load_model(bundle, device="cpu")
    message = str(caught.value)
    assert file_name in message
    assert "never unpickles" in message
    assert "save_bundle" in message
    assert "labelcut export" in message
    assert not marker.exists()


def test_a_pickled_checkpoint_passed_as_the_path_is_refused_unopened(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(_torch_save_bytes(Payload(marker)))
    with pytest.raises(BundleError, match="is a pickled checkpoint, not a bundle directory"):
        load_model(checkpoint)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["safetensors", "export", "torchscript"])
def test_a_pickle_in_place_of_the_declared_weights_is_refused_unopened(tmp_path, fmt):
    from labelcut.models import MLP

    module = MLP(D, len(LABELS), hidden_sizes=(6,)) if fmt == "safetensors" else _tiny()
    bundle = save_bundle(module, tmp_path / "b", labels=LABELS, input_shape=(D,), format=fmt)
    marker = tmp_path / "pwned"
    _set_weights(bundle, _torch_save_bytes(Payload(marker)))
    with pytest.raises(BundleError, match=f"pickled checkpoint.*not a '{fmt}' file"):
        load_model(bundle)
    assert not marker.exists()


def _rewrite_pt2(path: Path, replace) -> bytes:
    """Copy the zip at ``path``, letting ``replace(name, data)`` change member contents."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, replace(info.filename, source.read(info.filename)))
    return out.getvalue()


def test_export_archive_with_pickled_sample_inputs_is_refused_unopened(tmp_path):
    # torch.export.load retries sample inputs with weights_only=False when the safe
    # loader fails; the screen refuses such an archive before torch.export.load runs.
    bundle = save_bundle(_tiny(), tmp_path / "b", labels=LABELS, input_shape=(D,))
    marker = tmp_path / "pwned"
    evil = _torch_save_bytes(Payload(marker))
    content = _rewrite_pt2(
        bundle / "model.pt2",
        lambda name, data: evil if "/data/sample_inputs/" in name else data,
    )
    _set_weights(bundle, content)
    with pytest.raises(BundleError, match=r"sample inputs .* cannot be read without unpickling"):
        load_model(bundle)
    assert not marker.exists()


def test_export_archive_with_pickled_weights_is_refused(tmp_path):
    bundle = save_bundle(_tiny(), tmp_path / "b", labels=LABELS, input_shape=(D,))

    def mark_pickled(name: str, data: bytes) -> bytes:
        if name.endswith("data/weights/model_weights_config.json"):
            config = json.loads(data)
            for meta in config["config"].values():
                meta["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    _set_weights(bundle, _rewrite_pt2(bundle / "model.pt2", mark_pickled))
    with pytest.raises(BundleError, match="as pickles; labelcut does not unpickle"):
        load_model(bundle)


def test_sniffing_tells_the_formats_apart(tmp_path):
    from labelcut.models import MLP

    for fmt, suffix in (("safetensors", "safetensors"), ("export", "pt2"), ("torchscript", "ts")):
        module = MLP(D, 3) if fmt == "safetensors" else _tiny()
        bundle = save_bundle(module, tmp_path / fmt, labels=LABELS, input_shape=(D,), format=fmt)
        weights = next(p for p in bundle.iterdir() if p.name != "manifest.json")
        assert sniff_weights(weights) == fmt, suffix
    raw = tmp_path / "raw"
    raw.write_bytes(_torch_save_bytes(_tiny().state_dict()))
    assert sniff_weights(raw) == "pickle"
    raw.write_bytes(b"hello world, not a model")
    assert sniff_weights(raw) == "unknown"


def test_sha256_mismatch_names_the_file_and_both_digests(tmp_path):
    bundle = save_bundle(_tiny(), tmp_path / "b", labels=LABELS, input_shape=(D,))
    weights = bundle / "model.pt2"
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()
    content = bytearray(weights.read_bytes())
    content[-30] ^= 0xFF
    weights.write_bytes(bytes(content))
    found = hashlib.sha256(bytes(content)).hexdigest()
    with pytest.raises(BundleError) as caught:
        load_model(bundle)
    message = str(caught.value)
    assert str(weights) in message
    assert "sha256 mismatch" in message
    assert expected in message and found in message


@pytest.mark.parametrize("fmt", ["safetensors", "export", "torchscript"])
def test_label_count_mismatch_names_the_manifest_and_both_numbers(tmp_path, fmt):
    from labelcut.models import MLP

    module = MLP(D, len(LABELS)) if fmt == "safetensors" else _tiny()
    bundle = save_bundle(module, tmp_path / "b", labels=LABELS, input_shape=(D,), format=fmt)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["labels"] = [*LABELS, "d", "e"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    pattern = r"manifest\.json: lists 5 labels but the model in model\.\w+ outputs 3 values"
    with pytest.raises(BundleError, match=pattern):
        load_model(bundle)
    lazy = load_model(bundle, warmup=False)  # without warm-up the first call checks it
    with pytest.raises(BundleError, match=pattern):
        lazy.predict_proba(torch.zeros(2, D))
