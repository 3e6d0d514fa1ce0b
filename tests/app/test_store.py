"""ThresholdStore on a real SQLite file and on a real PostgreSQL server (when its binaries are
present): save, activate, history, archive, restart, model identity, schema versions, and
the upgrade of a store written by the first release."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from labelcut.app.store import (
    LATEST_VERSION,
    ModelIdentity,
    ModelMismatch,
    NewThresholdSet,
    SetIsActive,
    StoreUnavailable,
    ThresholdStore,
    UnknownThresholdSet,
    model_key,
)

from ..support.postgres import fresh_database, postgres  # noqa: F401 (fixture)

LABELS = ["a", "b", "c"]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1_0_thresholds.sqlite3"
YEAST_SHA = "a67a12d37855e83189d2434a520a10a7b7ffccd776376418efcbeb22fac0b680"
YEAST_LABELS = tuple(f"Class{i}" for i in range(1, 15))


def new_set(model_sha256: str = "m1" * 32, thresholds=(0.2, 0.5, 0.7), labels=LABELS):
    return NewThresholdSet(
        model_name="toy",
        model_sha256=model_sha256,
        labels=list(labels),
        objective="f1",
        params={"beta": 1.0},
        data_sha256="d" * 64,
        n_samples=10,
        thresholds=list(thresholds),
        result={"summary": {"macro_f1": {"tuned": 0.5, "default": 0.4}}},
    )


def toy(sha: str = "m1" * 32, labels=LABELS) -> ModelIdentity:
    return ModelIdentity("toy", sha, tuple(labels))


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request, tmp_path):
    """`opener()` opens the store (again): the same SQLite file or PostgreSQL database."""
    opened: list[ThresholdStore] = []
    if request.param == "sqlite":
        path = tmp_path / "store.sqlite3"

        def open_store() -> ThresholdStore:
            opened.append(ThresholdStore(path))
            return opened[-1]
    else:
        url = fresh_database(request.getfixturevalue("postgres"))

        def open_store() -> ThresholdStore:
            opened.append(ThresholdStore(url=url))
            return opened[-1]

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(opener):
    return opener()


def test_save_assigns_increasing_ids_and_round_trips(store):
    first = store.save(new_set(thresholds=(0.1, 0.2, 0.3)), activate=False)
    second = store.save(new_set(thresholds=(0.4, 0.5, 0.6)), activate=False)
    assert second.id > first.id
    again = store.get(first.id)
    assert again.thresholds == [0.1, 0.2, 0.3]
    assert again.threshold_map() == {"a": 0.1, "b": 0.2, "c": 0.3}
    assert again.created_at and again.params == {"beta": 1.0} and not again.archived
    assert store.active_for(toy()) is None
    assert store.schema_version() == LATEST_VERSION


def test_activate_moves_the_pointer_and_history_is_newest_first(store):
    first = store.save(new_set(), activate=True)
    second = store.save(new_set(), activate=True)
    assert store.active_for(toy()).id == second.id
    before = store.active(toy().key).activation_id
    store.activate(first.id, model=toy())
    pointer = store.active(toy().key)
    assert pointer.set.id == first.id and pointer.activation_id > before
    assert [s.id for s in store.history()] == [second.id, first.id]
    assert store.last_activation() == (first.id, first.model_sha256)
    assert [set_id for _, set_id in store.activations(toy().key)] == [first.id, second.id, first.id]


def test_unknown_id_and_other_model_leave_the_active_set_alone(store):
    mine = store.save(new_set(model_sha256="a" * 64), activate=True)
    theirs = store.save(new_set(model_sha256="b" * 64), activate=False)
    with pytest.raises(UnknownThresholdSet):
        store.activate(9999, model=toy("a" * 64))
    with pytest.raises(UnknownThresholdSet):
        store.activate(2**70, model=toy("a" * 64))
    with pytest.raises(ModelMismatch, match="tuned for model"):
        store.activate(theirs.id, model=toy("a" * 64))
    assert store.active_for(toy("a" * 64)).id == mine.id
    assert store.active_for(toy("b" * 64)) is None
    assert [s.id for s in store.history(model_sha256="b" * 64)] == [theirs.id]


def test_same_weights_with_reordered_labels_is_another_model(store):
    tuned = store.save(new_set(), activate=True)
    reordered = toy(labels=["c", "b", "a"])
    assert reordered.key != toy().key
    # The reordered model has no active set, and cannot activate the other order's set.
    assert store.active_for(reordered) is None
    with pytest.raises(ModelMismatch, match="in another order"):
        store.activate(tuned.id, model=reordered)
    renamed = toy(labels=["a", "b", "z"])
    with pytest.raises(ModelMismatch, match="only in the set"):
        store.activate(tuned.id, model=renamed)
    assert store.active_for(toy()).id == tuned.id
    assert [p.set.id for p in store.actives_for_weights(toy().sha256)] == [tuned.id]
    assert [s.id for s in store.history(model_key=reordered.key)] == []


def test_archive_hides_but_never_deletes_and_refuses_the_active_set(store):
    old = store.save(new_set(thresholds=(0.1, 0.1, 0.1)), activate=True)
    new = store.save(new_set(), activate=True)
    with pytest.raises(SetIsActive, match="active set"):
        store.archive(new.id)
    assert store.archive(old.id).archived
    assert [s.id for s in store.history()] == [new.id]
    assert [s.id for s in store.history(include_archived=True)] == [new.id, old.id]
    assert store.get(old.id).thresholds == [0.1, 0.1, 0.1] and store.count() == 2
    with pytest.raises(UnknownThresholdSet):
        store.archive(424242)
    # Rolling back to an archived set puts it back in use, and in the history.
    store.activate(old.id, model=toy())
    assert not store.get(old.id).archived
    assert [s.id for s in store.history()] == [new.id, old.id]


def test_active_set_survives_reopening(opener):
    store = opener()
    kept = store.save(new_set(thresholds=(0.11, 0.22, 0.33)), activate=True)
    store.save(new_set(), activate=False)
    store.close()
    reopened = opener()
    active = reopened.active_for(toy())
    assert active is not None and active.id == kept.id
    assert active.thresholds == [0.11, 0.22, 0.33]
    assert reopened.count() == 2 and reopened.schema_version() == LATEST_VERSION


def test_failed_save_writes_nothing(store):
    bad = new_set()
    bad = NewThresholdSet(**{**bad.__dict__, "thresholds": [0.1]})
    with pytest.raises(ValueError):
        store.save(bad, activate=True)
    assert store.count() == 0


def test_concurrent_activations_from_two_stores_serialise(opener):
    """Two handles on one database (two replicas): activations interleave, every one is in
    the history in commit order, and the pointer is the last one committed."""
    one, two = opener(), opener()
    sets = [one.save(new_set(thresholds=(i / 10,) * 3), activate=False) for i in range(5)]
    errors: list[BaseException] = []

    def flip(store: ThresholdStore, k: int) -> None:
        try:
            for j in range(25):
                store.activate(sets[(k + j) % 5].id, model=toy())
                active = store.active_for(toy())
                assert len(set(active.thresholds)) == 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=flip, args=(s, k)) for k, s in enumerate([one, two] * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    history = one.activations(toy().key)
    assert len(history) == 100
    pointer = two.active(toy().key)
    assert (pointer.activation_id, pointer.set.id) == history[-1]


def test_curves_are_stored_with_the_set_and_read_back(store):
    curves = [{"label": "a", "precision": [0.5, 1.0], "recall": [1.0, 0.0], "thresholds": [0.2]}]
    with_curves = store.save(new_set(), activate=False, curves=curves)
    without = store.save(new_set(), activate=False)
    assert store.curves(with_curves.id) == curves
    assert store.curves(without.id) is None
    with pytest.raises(UnknownThresholdSet):
        store.curves(12345)


def test_database_uses_wal(tmp_path):
    path = tmp_path / "store.sqlite3"
    ThresholdStore(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- the first release's store -------------------------------------------------------------


def release_rows(path: Path) -> dict:
    with sqlite3.connect(path) as db:
        return {
            "sets": db.execute(
                "SELECT id, created_at, model_name, model_sha256, labels, objective, params,"
                " data_sha256, n_samples, thresholds, result FROM threshold_sets ORDER BY id"
            ).fetchall(),
            "active": db.execute(
                "SELECT model_sha256, set_id, activated_at FROM active_sets ORDER BY model_sha256"
            ).fetchall(),
            "activations": db.execute(
                "SELECT id, model_sha256, set_id, activated_at FROM activations ORDER BY id"
            ).fetchall(),
            "curves": db.execute("SELECT set_id, payload FROM threshold_curves").fetchall(),
        }


def test_store_of_the_first_release_upgrades_with_everything_intact(tmp_path):
    path = tmp_path / "thresholds.sqlite3"
    shutil.copyfile(FIXTURE, path)
    before = release_rows(path)
    assert before["sets"] and before["active"] and len(before["activations"]) >= 3
    store = ThresholdStore(path)
    try:
        assert store.schema_version() == LATEST_VERSION
        assert release_rows(path) == before  # every old column of every row, byte for byte
        yeast = ModelIdentity("yeast-mlp", YEAST_SHA, YEAST_LABELS)
        old_pointer = dict((sha, set_id) for sha, set_id, _ in before["active"])
        assert store.active_for(yeast).id == old_pointer[YEAST_SHA]
        other = store.get(old_pointer["e" * 64])
        assert store.active(model_key("e" * 64, other.labels)).set.id == other.id
        assert [s.id for s in store.history()] == [row[0] for row in reversed(before["sets"])]
        assert store.activations() == [(row[0], row[2]) for row in before["activations"]]
        # The pointer's activation id is the last activation of that model.
        assert store.active(yeast.key).activation_id == max(
            row[0] for row in before["activations"] if row[1] == YEAST_SHA
        )
        # And it takes writes: ids go on from the old ones.
        new = store.save(new_set(), activate=True)
        assert new.id == max(row[0] for row in before["sets"]) + 1
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_upgraded_store_has_the_same_schema_as_a_new_one(tmp_path):
    migrated = tmp_path / "old.sqlite3"
    shutil.copyfile(FIXTURE, migrated)
    ThresholdStore(migrated).close()
    ThresholdStore(tmp_path / "new.sqlite3").close()

    def schema(path: Path) -> list:
        with sqlite3.connect(path) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return sorted(
                (t, tuple(db.execute(f"PRAGMA table_info({t})").fetchall()))
                for t in tables
                if t != "sqlite_sequence"
            ) + sorted(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type='index'"))

    assert schema(migrated) == schema(tmp_path / "new.sqlite3")


def test_store_from_a_newer_release_is_refused(tmp_path):
    path = tmp_path / "store.sqlite3"
    ThresholdStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(RuntimeError, match="schema version 99, newer"):
        ThresholdStore(path)


def test_unreachable_postgres_is_store_unavailable_with_the_password_masked(tmp_path):
    from ..support.server import free_port

    url = f"postgresql://someone:hunter2-secret@127.0.0.1:{free_port()}/db"
    with pytest.raises(StoreUnavailable) as raised:
        ThresholdStore(url=url)
    message = str(raised.value)
    assert "hunter2-secret" not in message and "someone:***@127.0.0.1" in message


def test_a_malformed_url_is_refused_without_repeating_it():
    with pytest.raises(ValueError, match="not a database URL") as raised:
        ThresholdStore(url="postgresql//someone:hunter2-secret@db/x")
    assert "hunter2-secret" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    with pytest.raises(ValueError, match="must be postgresql"):
        ThresholdStore(url="mysql://someone:hunter2-secret@db/x")
