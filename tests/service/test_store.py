"""ThresholdStore on a real SQLite file: save, activate, history, restart, model isolation."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from labelcut.app.store import ModelMismatch, NewThresholdSet, ThresholdStore, UnknownThresholdSet

LABELS = ["a", "b", "c"]


def new_set(model_sha256: str = "m1" * 32, thresholds=(0.2, 0.5, 0.7), objective="f1"):
    return NewThresholdSet(
        model_name="toy",
        model_sha256=model_sha256,
        labels=LABELS,
        objective=objective,
        params={"beta": 1.0},
        data_sha256="d" * 64,
        n_samples=10,
        thresholds=list(thresholds),
        result={"summary": {"macro_f1": {"tuned": 0.5, "default": 0.4}}},
    )


@pytest.fixture
def store(tmp_path):
    s = ThresholdStore(tmp_path / "store.sqlite3")
    yield s
    s.close()


def test_save_assigns_increasing_ids_and_round_trips(store):
    first = store.save(new_set(thresholds=(0.1, 0.2, 0.3)), activate=False)
    second = store.save(new_set(thresholds=(0.4, 0.5, 0.6)), activate=False)
    assert second.id > first.id
    again = store.get(first.id)
    assert again.thresholds == [0.1, 0.2, 0.3]
    assert again.threshold_map() == {"a": 0.1, "b": 0.2, "c": 0.3}
    assert again.created_at and again.params == {"beta": 1.0}
    assert store.active_for("m1" * 32) is None


def test_activate_moves_the_pointer_and_history_is_newest_first(store):
    first = store.save(new_set(), activate=True)
    second = store.save(new_set(), activate=True)
    assert store.active_for(first.model_sha256).id == second.id
    store.activate(first.id, model_sha256=first.model_sha256)
    assert store.active_for(first.model_sha256).id == first.id
    assert [s.id for s in store.history()] == [second.id, first.id]
    assert store.last_activation() == (first.id, first.model_sha256)


def test_unknown_id_and_other_model_leave_the_active_set_alone(store):
    mine = store.save(new_set(model_sha256="a" * 64), activate=True)
    theirs = store.save(new_set(model_sha256="b" * 64), activate=False)
    with pytest.raises(UnknownThresholdSet):
        store.activate(9999, model_sha256="a" * 64)
    with pytest.raises(ModelMismatch, match="tuned for model"):
        store.activate(theirs.id, model_sha256="a" * 64)
    assert store.active_for("a" * 64).id == mine.id
    assert store.active_for("b" * 64) is None
    assert [s.id for s in store.history(model_sha256="b" * 64)] == [theirs.id]


def test_active_set_survives_reopening(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = ThresholdStore(path)
    kept = store.save(new_set(thresholds=(0.11, 0.22, 0.33)), activate=True)
    store.save(new_set(), activate=False)
    store.close()
    reopened = ThresholdStore(path)
    try:
        active = reopened.active_for(kept.model_sha256)
        assert active is not None and active.id == kept.id
        assert active.thresholds == [0.11, 0.22, 0.33]
        assert reopened.count() == 2
    finally:
        reopened.close()


def test_database_uses_wal(tmp_path):
    path = tmp_path / "store.sqlite3"
    ThresholdStore(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_save_writes_nothing(store):
    bad = new_set()
    bad = NewThresholdSet(**{**bad.__dict__, "thresholds": [0.1]})
    with pytest.raises(ValueError):
        store.save(bad, activate=True)
    assert store.count() == 0


def test_concurrent_saves_and_activations_keep_one_whole_active_set(store):
    sets = [
        store.save(new_set(thresholds=(i / 10, i / 10, i / 10)), activate=False) for i in range(5)
    ]
    errors: list[BaseException] = []

    def flip(k: int) -> None:
        try:
            for j in range(40):
                store.activate(sets[(k + j) % 5].id, model_sha256=sets[0].model_sha256)
                active = store.active_for(sets[0].model_sha256)
                assert len(set(active.thresholds)) == 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=flip, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.active_for(sets[0].model_sha256).id in {s.id for s in sets}


def test_curves_are_stored_with_the_set_and_read_back(store):
    curves = [{"label": "a", "precision": [0.5, 1.0], "recall": [1.0, 0.0], "thresholds": [0.2]}]
    with_curves = store.save(new_set(), activate=False, curves=curves)
    without = store.save(new_set(), activate=False)
    assert store.curves(with_curves.id) == curves
    assert store.curves(without.id) is None
    with pytest.raises(UnknownThresholdSet):
        store.curves(12345)
