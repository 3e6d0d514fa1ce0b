"""Issues 13 and 18, the service side: the form fields and CLI flags of a tune come from
tuning's one parameter table, with its bounds; the objectives of issue 18 (cost with
per-label maps, micro F1, the abstain rule) through `/tune-thresholds` and `labelcut tune`,
checked against brute-force and scikit-learn oracles on the model's own scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from labelcut import tuning
from labelcut.app.cli import build_parser, main
from labelcut.models import YEAST_TEST, load_model

from .conftest import make_client, wait_ready

TABLE = [p.name for p in tuning.TUNE_PARAMETERS]


@pytest.fixture(scope="module")
def yeast():
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        x, y = z["X"], z["Y"]
    model = load_model(device="cpu")
    return {"scores": model.predict_proba(x), "Y": y, "labels": list(model.labels)}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with make_client(tmp_path_factory.mktemp("options")) as c:
        wait_ready(c)
        yield c


def tune(client, **form):
    files = {"file": ("v.npz", YEAST_TEST.read_bytes())}
    return client.post("/tune-thresholds", files=files, data={"n_bootstrap": "0", **form})


def test_form_fields_are_the_parameter_table(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/tune-thresholds"]["post"]["requestBody"]["content"]
    ref = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][ref]["properties"]
    assert set(fields) == {
        *TABLE,
        "calibration",
        "calibration_tuning",
        "file",
        "activate",
        "store",
        "source",
        "job",
    }
    for p in tuning.TUNE_PARAMETERS:
        assert p.help in fields[p.name]["description"]


def test_cli_flags_are_the_parameter_table():
    tune_parser = build_parser()._subparsers._group_actions[0].choices["tune"]
    dests = {action.dest for action in tune_parser._actions}
    assert set(TABLE) <= dests
    choices = {a.dest: a.choices for a in tune_parser._actions if a.choices}
    assert list(choices["strategy"]) == list(tuning.parameter("strategy").choices)
    assert list(choices["decision_rule"]) == list(tuning.parameter("decision_rule").choices)
    assert set(tuning.OBJECTIVES) | set(tuning.MULTICLASS_OBJECTIVES) == set(choices["objective"])


def _past_the_bounds() -> list[tuple[str, str]]:
    cases = []
    for p in tuning.TUNE_PARAMETERS:
        if p.kind not in ("int", "float") or p.name in ("cost_fp", "cost_fn", "k"):
            continue
        if p.maximum is not None:
            cases.append((p.name, repr(p.maximum + 1)))
        if p.minimum is not None:
            cases.append((p.name, repr(p.minimum - 1)))
    return cases


@pytest.mark.parametrize(("name", "value"), _past_the_bounds())
def test_every_bound_of_the_table_is_a_422_naming_the_field(client, name, value):
    before = client.get("/thresholds/history").json()
    response = tune(client, **{name: value})
    assert response.status_code == 422, (name, value, response.text)
    assert name in json.dumps(response.json()["detail"])
    assert client.get("/thresholds/history").json() == before


def brute_force_cost(scores, targets, cost_fp, cost_fn) -> float:
    """The least total cost per label over every cut (all distinct scores and 'nothing')."""
    total = 0.0
    for j in range(scores.shape[1]):
        s, y = scores[:, j], targets[:, j].astype(bool)
        best = cost_fn[j] * y.sum()  # predict nothing
        for t in np.unique(s):
            yes = s >= t
            best = min(best, cost_fp[j] * (yes & ~y).sum() + cost_fn[j] * (~yes & y).sum())
        total += best
    return float(total)


def test_cost_with_a_per_label_map_reaches_the_brute_force_optimum(client, yeast):
    labels = yeast["labels"]
    cost_fn = {labels[0]: 5.0, labels[3]: 0.5, "*": 2.0}
    response = tune(
        client,
        objective="cost",
        cost_fp="1",
        cost_fn=json.dumps(cost_fn),
        strategy="per_label",
        activate="false",
    )
    assert response.status_code == 200, response.text
    fn = np.array([cost_fn.get(label, cost_fn["*"]) for label in labels])
    fp = np.ones(len(labels))
    expected = brute_force_cost(yeast["scores"], yeast["Y"], fp, fn)
    assert response.json()["summary"]["cost"]["tuned"] == pytest.approx(expected)
    thresholds = np.array([response.json()["thresholds"][label] for label in labels])
    yes = yeast["scores"] >= thresholds
    truth = yeast["Y"].astype(bool)
    measured = (fp * (yes & ~truth).sum(axis=0) + fn * (~yes & truth).sum(axis=0)).sum()
    assert measured == pytest.approx(expected)


@pytest.mark.parametrize(
    ("cost_fn", "needle"),
    [
        ('{"NoSuchLabel": 2}', "NoSuchLabel"),
        ('{"Class1": "two"}', "Class1"),
        ('{"Class1": -1, "*": 1}', "Class1"),
        ("-3", "cost_fn"),
        ("not json", "cost_fn"),
        ("[1, 2]", "cost_fn"),
    ],
)
def test_bad_costs_are_422_naming_the_field_or_label(client, cost_fn, needle):
    before = client.get("/thresholds/history").json()
    response = tune(client, objective="cost", cost_fn=cost_fn)
    assert response.status_code == 422, response.text
    assert needle in json.dumps(response.json()["detail"])
    assert client.get("/thresholds/history").json() == before


def test_micro_f1_matches_scikit_learn_at_its_thresholds(client, yeast):
    response = tune(client, objective="micro_f1", activate="false")
    assert response.status_code == 200, response.text
    body = response.json()
    thresholds = np.array([body["thresholds"][label] for label in yeast["labels"]])
    predicted = (yeast["scores"] >= thresholds).astype(int)
    expected = f1_score(yeast["Y"], predicted, average="micro", zero_division=0)
    assert body["summary"]["micro_f1"]["tuned"] == pytest.approx(expected)
    assert body["summary"]["micro_f1"]["tuned"] >= body["summary"]["micro_f1"]["default"]


def test_abstain_stores_lower_thresholds_with_the_set(client, yeast):
    response = tune(client, decision_rule="abstain", target="0.8", npv_target="0.9")
    assert response.status_code == 200, response.text
    body = response.json()
    info = body["threshold_set"]
    lower = info["params"]["lower_thresholds"]
    assert info["decision_rule"] == "abstain" and len(lower) == len(yeast["labels"])
    upper = [body["thresholds"][label] for label in yeast["labels"]]
    assert all(lo <= up for lo, up in zip(lower, upper, strict=True))
    assert list(body["lower_thresholds"].values()) == lower
    # On the tuning data every confident yes meets the precision target where one exists.
    for j, row in enumerate(body["per_label"]):
        yes = yeast["scores"][:, j] >= upper[j]
        if row["status"] == "ok" and yes.any():
            assert yeast["Y"][yes, j].mean() >= 0.8 - 1e-12
    stored = response.json()["threshold_set"]["id"]
    assert (
        client.get(f"/thresholds/{stored}").json()["lower_thresholds"] == body["lower_thresholds"]
    )


def test_abstain_needs_both_targets(client):
    response = tune(client, decision_rule="abstain", target="0.8")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "npv_target"]


def test_cli_costs_from_a_json_file(tmp_path, capsys, yeast):
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"*": 3.0}))
    out = tmp_path / "cost.json"
    args = ["tune", str(YEAST_TEST), "--device", "cpu", "--n-bootstrap", "0"]
    flags = ["--objective", "cost", "--cost-fn", f"@{costs}", "--strategy", "per_label"]
    assert main([*args, *flags, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    n_labels = len(yeast["labels"])
    expected = brute_force_cost(
        yeast["scores"], yeast["Y"], np.ones(n_labels), np.full(n_labels, 3.0)
    )
    assert report["summary"]["cost"]["tuned"] == pytest.approx(expected)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:  # argparse refuses the flag itself
        main([*args, "--objective", "cost", "--cost-fn", "@/no/such/file.json"])
    assert exited.value.code == 2 and "--cost-fn" in capsys.readouterr().err
