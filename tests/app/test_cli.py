"""The command line: tune offline and export a checkpoint, as a user runs them."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from labelcut import tuning
from labelcut.app.cli import main
from labelcut.models import YEAST_TEST, load_model
from labelcut.models.architectures import MLP


def test_tune_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(["tune", str(YEAST_TEST), "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    model = load_model(device="cpu")
    for label in model.labels:
        assert label in printed
    assert "macro_f1: tuned" in printed
    assert "adaptive" in printed and "interval" in printed
    report = json.loads(out.read_text())
    with np.load(YEAST_TEST) as z:
        expected = tuning.tune_thresholds(model.predict_proba(z["X"]), z["Y"])
    got = [report["thresholds"][label] for label in model.labels]
    np.testing.assert_allclose(got, expected.thresholds)


def test_tune_table_marks_in_sample_figures_and_shows_what_to_expect(tmp_path, capsys):
    out = tmp_path / "result.json"
    args = ["tune", str(YEAST_TEST), "--device", "cpu", "--n-bootstrap", "0", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    macro = report["summary"]["macro_f1"]
    low, high = macro["expected_interval"]
    assert "new f1" in printed.splitlines()[0] and "in sample" in printed
    assert (
        f"macro_f1: tuned {macro['tuned']:.4f} vs 0.5 {macro['default']:.4f} in sample; "
        f"expected on new data {macro['expected']:.4f} (90%: {low:.4f}-{high:.4f})"
    ) in printed
    first = report["per_label"][0]
    row = next(line for line in printed.splitlines() if line.startswith(first["label"] + " "))
    assert f"{first['expected_f1']:.3f}" in row.split()
    assert f"adaptive kept: {report['summary']['adaptive']['why']}" in printed
    # Without the estimate the table has no such column or figures.
    assert main([*args[:-2], "--estimate", "false"]) == 0
    bare = capsys.readouterr().out
    assert "new f1" not in bare and "expected on new data" not in bare


def test_tune_reports_bad_arguments_without_a_traceback(tmp_path, capsys):
    code = main(["tune", str(YEAST_TEST), "--objective", "recall_at_precision"])
    assert code == 2
    assert "target" in capsys.readouterr().err
    missing = main(["tune", str(tmp_path / "nope.csv")])
    assert missing == 2


def test_export_converts_a_state_dict_into_a_loadable_bundle(tmp_path):
    torch.manual_seed(0)
    module = MLP(4, 3, hidden_sizes=[8])
    checkpoint = tmp_path / "ckpt.pt"
    torch.save(module.state_dict(), checkpoint)
    kwargs = json.dumps({"input_size": 4, "num_labels": 3, "hidden_sizes": [8]})
    code = main(
        [
            "export",
            str(checkpoint),
            str(tmp_path / "bundle"),
            "--labels",
            "a,b,c",
            "--input-shape",
            "4",
            "--factory",
            "labelcut.models.architectures:MLP",
            "--factory-kwargs",
            kwargs,
            "--format",
            "safetensors",
        ]
    )
    assert code == 0
    loaded = load_model(tmp_path / "bundle", device="cpu")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        expected = torch.sigmoid(module.eval()(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(loaded.predict_proba(x), expected, atol=1e-6)
    assert loaded.labels == ["a", "b", "c"]


def test_tune_strategy_flag(tmp_path, capsys):
    out = tmp_path / "result.json"
    args = ["tune", str(YEAST_TEST), "--device", "cpu", "--strategy", "global"]
    assert main([*args, "--n-bootstrap", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["strategy"] == "global"
    assert len(set(report["thresholds"].values())) == 1
    with pytest.raises(SystemExit) as info:
        main(["tune", str(YEAST_TEST), "--strategy", "mean"])
    assert info.value.code == 2
    assert "invalid choice: 'mean'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["tune", "serve", "push", "train", "export", None])
def test_every_help_page_prints(command, capsys):
    # A literal % in a help text ("90% interval") once made `labelcut tune --help` crash.
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"] if command else ["--help"])
    assert stopped.value.code == 0
    printed = capsys.readouterr().out
    assert "usage:" in printed
    if command == "tune":
        for p in tuning.TUNE_PARAMETERS:
            assert "--" + p.name.replace("_", "-") in printed
        assert "90% interval" in printed


def test_version(capsys):
    import labelcut

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"labelcut {labelcut.__version__}"


def test_tune_decision_rule_goes_into_the_json(tmp_path, capsys):
    out = tmp_path / "result.json"
    args = ["tune", str(YEAST_TEST), "--device", "cpu", "--n-bootstrap", "0", "--out", str(out)]
    assert main([*args, "--decision-rule", "top_k", "--k", "2"]) == 0
    assert "top_k (k=2)" in capsys.readouterr().out
    report = json.loads(out.read_text())
    model = load_model(device="cpu")
    assert (report["decision_rule"], report["k"]) == ("top_k", 2)
    assert report["model"] == {"name": model.name, "sha256": model.sha256}
    assert report["data_sha256"] == hashlib.sha256(YEAST_TEST.read_bytes()).hexdigest()
    assert [c["label"] for c in report["curves"]] == list(model.labels)
    assert [c["threshold"] for c in report["curves"]] == list(report["thresholds"].values())
    assert main([*args, "--decision-rule", "top_k"]) == 2
    assert "--k" in capsys.readouterr().err
    assert main([*args, "--k", "2"]) == 2
    assert main([*args, "--decision-rule", "top_k", "--k", "15"]) == 2
    assert "k must be at most the model's number of labels (14)" in capsys.readouterr().err


def test_push_reports_an_unreadable_file_and_no_server(tmp_path, capsys):
    assert main(["push", str(tmp_path / "missing.json"), "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["push", str(bad), "--url", "http://127.0.0.1:9", "--timeout", "2"]) == 1
    assert "no answer" in capsys.readouterr().err
