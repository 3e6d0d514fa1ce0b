"""Converting a trusted checkpoint into a bundle (python -m labelcut.models.export)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from labelcut.models import MLP, load_model
from labelcut.models.export import convert_checkpoint, main

LABELS = ["a", "b", "c"]
D = 5
MLP_KWARGS = {"input_size": D, "num_labels": 3, "hidden_sizes": [6]}


class Payload:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _probabilities(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.sigmoid(module.eval()(x))


def test_state_dict_checkpoint_via_factory(tmp_path):
    torch.manual_seed(0)
    module = MLP(**MLP_KWARGS)
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": module.state_dict()}, checkpoint)
    bundle = convert_checkpoint(
        checkpoint,
        tmp_path / "b",
        labels=LABELS,
        input_shape=(D,),
        factory="labelcut.models.architectures:MLP",
        factory_kwargs=MLP_KWARGS,
        format="safetensors",
    )
    x = torch.randn(9, D)
    loaded = load_model(bundle).predict_proba(x)
    assert torch.allclose(loaded, _probabilities(module, x), atol=1e-6)


def test_whole_pickled_model_only_with_trust_pickle(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(D, 4), nn.ReLU(), nn.Linear(4, 3))
    checkpoint = tmp_path / "model.pt"
    torch.save(module, checkpoint)
    with pytest.raises(ValueError, match="say how to read it"):
        convert_checkpoint(checkpoint, tmp_path / "b", labels=LABELS, input_shape=(D,))
    bundle = convert_checkpoint(
        checkpoint, tmp_path / "b", labels=LABELS, input_shape=(D,), trust_pickle=True
    )
    x = torch.randn(4, D)
    assert torch.allclose(load_model(bundle).predict_proba(x), _probabilities(module, x), atol=1e-6)


def test_state_dict_reading_never_runs_a_payload(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"state_dict": Payload(marker)}, checkpoint)
    with pytest.raises(ValueError, match=r"weights_only=True"):
        convert_checkpoint(
            checkpoint,
            tmp_path / "b",
            labels=LABELS,
            input_shape=(D,),
            factory="labelcut.models.architectures:MLP",
            factory_kwargs=MLP_KWARGS,
        )
    assert not marker.exists()


def test_command_line(tmp_path, capsys):
    torch.manual_seed(0)
    module = MLP(**MLP_KWARGS)
    checkpoint = tmp_path / "ckpt.pth"
    torch.save(module.state_dict(), checkpoint)
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("a\nb\nc\n")
    argv = [
        str(checkpoint),
        str(tmp_path / "b"),
        "--labels",
        f"@{labels_file}",
        "--input-shape",
        str(D),
        "--factory",
        "labelcut.models.architectures:MLP",
        "--factory-kwargs",
        json.dumps(MLP_KWARGS),
        "--format",
        "torchscript",
        "--name",
        "cli",
    ]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    model = load_model(tmp_path / "b")
    assert (model.name, model.format, model.labels) == ("cli", "torchscript", LABELS)
    x = np.random.default_rng(0).normal(size=(3, D)).astype(np.float32)
    expected = _probabilities(module, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict_proba(x), expected, atol=1e-6)
