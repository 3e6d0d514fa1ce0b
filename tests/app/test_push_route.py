"""POST /thresholds in process: an offline tune report stored as a set, strictly checked."""

from __future__ import annotations

import copy
import json

import pytest

from labelcut.app.cli import main as cli_main
from labelcut.models import YEAST_TEST

from ..support.inprocess import app_client, wait_ready


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("tune") / "result.json"
    args = ["tune", str(YEAST_TEST), "--device", "cpu", "--n-bootstrap", "0", "--out", str(out)]
    assert cli_main([*args, "--decision-rule", "top_k", "--k", "3"]) == 0
    return json.loads(out.read_text())


@pytest.fixture
def client(tmp_path):
    with app_client(tmp_path / "data") as c:
        wait_ready(c)
        yield c


def test_a_pushed_report_becomes_a_set_with_its_curves(client, report):
    answer = client.post("/thresholds", json=report)
    assert answer.status_code == 201, answer.text
    stored = answer.json()
    info = stored["threshold_set"]
    assert info["active"] is False and info["decision_rule"] == "top_k" and info["k"] == 3
    assert info["data_sha256"] == report["data_sha256"]
    assert stored["thresholds"] == report["thresholds"]
    assert client.get("/thresholds").json()["threshold_set"] is None  # not activated
    curves = client.get(f"/thresholds/{info['id']}/curves").json()["curves"]
    assert [c["label"] for c in curves] == list(report["thresholds"])
    assert curves[0]["precision"] == report["curves"][0]["precision"]
    again = client.post("/thresholds?activate=true", json=report).json()["threshold_set"]
    assert (
        again["active"] is True
        and client.get("/thresholds").json()["threshold_set"]["id"] == (again["id"])
    )
    history = client.get("/thresholds/history").json()["items"]
    assert [item["id"] for item in history] == [again["id"], info["id"]]


def _broken(report: dict, change) -> dict:
    bad = copy.deepcopy(report)
    change(bad)
    return bad


def _set(path, value):
    def change(doc):
        *parents, last = path
        for key in parents:
            doc = doc[key]
        doc[last] = value

    return change


def _swap_first_two_labels(doc):
    items = list(doc["thresholds"].items())
    items[0], items[1] = items[1], items[0]
    doc["thresholds"] = dict(items)


CASES = {
    "label order": (_swap_first_two_labels, "order"),
    "unknown label": (lambda d: d["thresholds"].update(Nope=0.5), "Nope"),
    "threshold above 1": (_set(("thresholds", "Class2"), 1.5), "thresholds.Class2"),
    "negative rate": (_set(("per_label", 0, "recall"), -0.1), "per_label.0.recall"),
    "per-label threshold differs": (_set(("per_label", 0, "threshold"), 0.123), "Class1"),
    "support over n_samples": (_set(("per_label", 3, "support"), 10**6), "n_samples"),
    "macro F1 made up": (_set(("summary", "macro_f1", "tuned"), 0.99), "macro_f1"),
    "unknown objective": (_set(("objective",), "accuracy"), "objective"),
    "k without top_k": (_set(("decision_rule",), "threshold"), "k goes with"),
    "k over the labels": (_set(("k",), 15), "at most"),
    "bad data hash": (_set(("data_sha256",), "xyz"), "data_sha256"),
    "curve too long": (_set(("curves", 0, "thresholds"), [0.5] * 5000), "curves.0"),
    "deep diagnosis": (_set(("diagnosis",), {"a": {"b": {"c": {"d": {"e": [1]}}}}}), "deeper"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_reports_get_422_naming_the_problem_and_store_nothing(client, report, case):
    change, named = CASES[case]
    answer = client.post("/thresholds", json=_broken(report, change))
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"]
    assert client.get("/thresholds/history").json()["items"] == []


def test_nan_and_not_json_are_refused(client, report):
    text = json.dumps(report).replace(str(report["thresholds"]["Class1"]), "NaN", 1)
    nan = client.post("/thresholds", content=text, headers={"content-type": "application/json"})
    assert nan.status_code == 422 and "JSON" in nan.json()["detail"]
    assert client.post("/thresholds", content=b"\x00garbage").status_code == 422


def test_a_report_of_another_model_gets_409(client, report):
    other = _broken(report, _set(("model", "sha256"), "0" * 64))
    answer = client.post("/thresholds", json=other)
    assert answer.status_code == 409 and "000000000000" in answer.json()["detail"]
    assert client.get("/thresholds/history").json()["items"] == []


def test_push_is_an_admin_operation(tmp_path, report):
    with app_client(tmp_path / "d", admin_key="s3cret") as c:
        wait_ready(c)
        assert c.post("/thresholds", json=report).status_code == 401
        assert (
            c.post("/thresholds", json=report, headers={"authorization": "Bearer x"}).status_code
            == 403
        )
        ok = c.post("/thresholds", json=report, headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 201
    with app_client(tmp_path / "e", client=("203.0.113.9", 4000)) as c:
        wait_ready(c)
        assert c.post("/thresholds", json=report).status_code == 403


def test_unknown_query_parameters_are_refused(client, report):
    answer = client.post("/thresholds?activte=true", json=report)
    assert answer.status_code == 422 and "activte" in str(answer.json()["detail"])
    assert client.get("/thresholds/history").json()["items"] == []
