"""Dynamic batching: coalescing, per-request answers and errors, drain, batching off.

A spy wraps the real bundled model: it records the rows of every forward pass and
can hold the first pass until released, so that later requests queue behind it
deterministically (no timings).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from labelcut import tuning
from labelcut.app.batching import Batcher, BatcherClosed
from labelcut.app.decisions import Policy
from labelcut.models import load_model

from .conftest import make_client, wait_ready

POISON = 12345.0  # a feature value the spy refuses, standing in for a model failure


class SpyModel:
    """Delegates to a real LoadedModel; records pass sizes; can hold or fail a pass."""

    def __init__(self, model) -> None:
        self.model = model
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def hold_next(self) -> None:
        self.entered.clear()
        self.release.clear()

    def predict_proba(self, x, batch_size=None):
        self.calls.append(len(x))
        self.entered.set()
        self.release.wait(timeout=30)
        if np.any(np.asarray(x) == POISON):
            raise RuntimeError("poisoned row")
        return self.model.predict_proba(x, batch_size)

    def __getattr__(self, name):
        return getattr(self.model, name)


@pytest.fixture(scope="module")
def model():
    return load_model(device="cpu")


@pytest.fixture(scope="module")
def rows(yeast_test):
    return yeast_test["X"][:8].astype(np.float32)


async def _queue_behind_a_held_pass(batcher, spy, first, others, **kw):
    """Start a pass for `first` and hold it; queue `others`; then let everything run."""
    spy.hold_next()
    head = asyncio.ensure_future(batcher.submit(first, **kw))
    await asyncio.to_thread(spy.entered.wait, 30)
    tails = [asyncio.ensure_future(batcher.submit(x, **kw)) for x in others]
    while batcher.depth < len(others):
        await asyncio.sleep(0)
    spy.release.set()
    return await asyncio.gather(head, *tails, return_exceptions=True)


def test_concurrent_requests_share_one_pass_and_get_their_own_rows(model, rows):
    spy = SpyModel(model)
    thresholds = np.full(len(model.labels), 0.5)

    async def scenario():
        batcher = Batcher(lambda: spy, max_batch_size=64, max_wait=0.002)
        try:
            others = [rows[i : i + 1] for i in range(1, 6)] + [rows[6:8]]
            return await _queue_behind_a_held_pass(
                batcher, spy, rows[:1], others, thresholds=thresholds
            )
        finally:
            await batcher.close()

    outputs = asyncio.run(scenario())
    # The first pass held one row; the six requests queued behind it (7 rows) ran as one.
    assert spy.calls == [1, 7]
    answers = [o.proba for o in outputs]
    np.testing.assert_allclose(np.concatenate(answers), model.predict_proba(rows), atol=1e-6)
    for i, out in enumerate(outputs[:6]):
        alone = model.predict_proba(rows[i : i + 1])
        np.testing.assert_allclose(out.proba, alone, atol=1e-6)
        assert np.array_equal(out.decisions, tuning.apply_thresholds(alone, thresholds))
        assert out.logits is None
    assert outputs[6].proba.shape == (2, len(model.labels))


def test_each_request_keeps_its_own_thresholds_and_logits(model, rows):
    spy = SpyModel(model)
    low, high = np.zeros(len(model.labels)), np.ones(len(model.labels))

    async def scenario():
        batcher = Batcher(lambda: spy, max_batch_size=64, max_wait=0.0)
        try:
            spy.hold_next()
            head = asyncio.ensure_future(batcher.submit(rows[:1]))
            await asyncio.to_thread(spy.entered.wait, 30)
            a = asyncio.ensure_future(batcher.submit(rows[1:2], thresholds=low))
            b = asyncio.ensure_future(batcher.submit(rows[1:2], thresholds=high, want_logits=True))
            while batcher.depth < 2:
                await asyncio.sleep(0)
            spy.release.set()
            return await asyncio.gather(head, a, b)
        finally:
            await batcher.close()

    _, a, b = asyncio.run(scenario())
    assert spy.calls == [1, 2]
    assert a.decisions.all() and not b.decisions.any()  # score >= 0 always; >= 1 never here
    assert a.logits is None
    np.testing.assert_allclose(b.logits, model.predict_logits(rows[1:2]), atol=1e-5)


def test_a_failing_request_does_not_fail_the_others(model, rows):
    spy = SpyModel(model)
    bad = rows[2:3].copy()
    bad[0, 5] = POISON

    async def scenario():
        batcher = Batcher(lambda: spy, max_batch_size=64, max_wait=0.0)
        try:
            others = [rows[1:2], bad, rows[3:4]]
            return await _queue_behind_a_held_pass(batcher, spy, rows[:1], others)
        finally:
            await batcher.close()

    head, good1, failed, good2 = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError) and "poisoned" in str(failed)
    for out, i in ((head, 0), (good1, 1), (good2, 3)):
        np.testing.assert_allclose(out.proba, model.predict_proba(rows[i : i + 1]), atol=1e-6)
    # One shared attempt failed; each of its requests was then retried alone.
    assert spy.calls == [1, 3, 1, 1, 1]


def test_close_answers_every_queued_request_then_refuses_new_ones(model, rows):
    spy = SpyModel(model)

    async def scenario():
        batcher = Batcher(lambda: spy, max_batch_size=2, max_wait=0.0)
        spy.hold_next()
        head = asyncio.ensure_future(batcher.submit(rows[:1]))
        await asyncio.to_thread(spy.entered.wait, 30)
        tails = [asyncio.ensure_future(batcher.submit(rows[i : i + 1])) for i in range(1, 6)]
        while batcher.depth < 5:
            await asyncio.sleep(0)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(BatcherClosed):
            await batcher.submit(rows[:1])
        spy.release.set()
        await closing
        return await asyncio.gather(head, *tails)

    outputs = asyncio.run(scenario())
    assert len(outputs) == 6 and all(o.proba.shape == (1, len(model.labels)) for o in outputs)
    assert spy.calls == [1, 2, 2, 1]  # drained in passes of at most max_batch_size rows


def test_batch_size_one_turns_batching_off_and_big_requests_run_alone(model, rows):
    spy = SpyModel(model)

    async def scenario(max_batch_size, first, others):
        batcher = Batcher(lambda: spy, max_batch_size=max_batch_size, max_wait=0.05)
        try:
            return await _queue_behind_a_held_pass(batcher, spy, first, others)
        finally:
            await batcher.close()

    asyncio.run(scenario(1, rows[:1], [rows[i : i + 1] for i in range(1, 5)]))
    assert spy.calls == [1, 1, 1, 1, 1]

    spy.calls.clear()
    # Passes hold up to 4 rows; the 6-row request is never split and runs on its own.
    outputs = asyncio.run(scenario(4, rows[:1], [rows[1:2], rows[2:8], rows[1:3], rows[3:4]]))
    assert spy.calls == [1, 1, 6, 3]
    np.testing.assert_allclose(outputs[2].proba, model.predict_proba(rows[2:8]), atol=1e-6)


def test_invalid_settings_are_refused(model):
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(lambda: model, max_batch_size=0, max_wait=0.0)
    with pytest.raises(ValueError, match="max_wait"):
        Batcher(lambda: model, max_batch_size=4, max_wait=-1.0)


# --- through the app -------------------------------------------------------------------------


def _spy_on_app_model(client) -> SpyModel:
    service = client.app.state.service
    spy = SpyModel(service.model)
    service.model = spy  # the batcher reads service.loaded_model at every pass
    return spy


def _post_concurrently(client, spy, bodies):
    """Hold a pass, send every body from its own thread, release once all have queued."""
    batcher = client.app.state.batcher
    spy.hold_next()
    with ThreadPoolExecutor(len(bodies)) as pool:
        first = pool.submit(client.post, "/predict", json=bodies[0])
        assert spy.entered.wait(30)
        rest = [pool.submit(client.post, "/predict", json=b) for b in bodies[1:]]
        while batcher.depth < len(rest):
            threading.Event().wait(0.001)
        spy.release.set()
        return [f.result() for f in [first, *rest]]


def test_http_requests_coalesce_and_match_unbatched_answers(tmp_path, model, rows):
    first = model.labels[0]
    bodies = [{"inputs": rows[i : i + 1].tolist()} for i in range(6)]
    bodies[3]["thresholds"] = {first: 0.0}
    bodies[4]["return_logits"] = True
    with make_client(tmp_path) as client:
        wait_ready(client)
        spy = _spy_on_app_model(client)
        responses = _post_concurrently(client, spy, bodies)
        unbatched = [client.post("/predict", json=b).json() for b in bodies]
    assert spy.calls[:2] == [1, 5]
    for response, alone in zip(responses, unbatched, strict=True):
        assert response.status_code == 200, response.text
        got = response.json()
        assert got["labels"] == alone["labels"]
        for p, q in zip(got["predictions"], alone["predictions"], strict=True):
            assert p["labels"] == q["labels"]
            assert p["scores"] == pytest.approx(q["scores"], abs=1e-6)
            assert ("logits" in p) == ("logits" in q)
    assert first in responses[3].json()["predictions"][0]["labels"]
    assert "logits" in responses[4].json()["predictions"][0]


def test_http_bad_request_is_refused_before_the_batch(tmp_path, rows):
    bodies = [{"inputs": rows[i : i + 1].tolist()} for i in range(4)]
    bodies[2] = {"inputs": [[0.0] * 5]}
    with make_client(tmp_path) as client:
        wait_ready(client)
        spy = _spy_on_app_model(client)
        spy.hold_next()
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(client.post, "/predict", json=bodies[0])
            assert spy.entered.wait(30)
            bad = client.post("/predict", json=bodies[2])  # answered while a pass is held
            rest = [pool.submit(client.post, "/predict", json=b) for b in (bodies[1], bodies[3])]
            while client.app.state.batcher.depth < 2:
                threading.Event().wait(0.001)
            assert client.get("/healthz").status_code == 200  # the loop is free meanwhile
            spy.release.set()
            good = [f.result() for f in [first, *rest]]
    assert bad.status_code == 422 and "inputs[0] has shape [5]" in bad.json()["detail"]
    assert [r.status_code for r in good] == [200, 200, 200]
    assert spy.calls == [1, 2]


def test_http_forward_failure_is_a_500_for_that_request_only(tmp_path, rows):
    poisoned = rows[1:2].copy()
    poisoned[0, 0] = POISON
    bodies = [{"inputs": rows[i : i + 1].tolist()} for i in range(4)]
    bodies[2] = {"inputs": poisoned.tolist()}
    with make_client(tmp_path) as client:
        wait_ready(client)
        spy = _spy_on_app_model(client)
        responses = _post_concurrently(client, spy, bodies)
    assert [r.status_code for r in responses] == [200, 200, 500, 200]
    assert "poisoned row" in responses[2].json()["detail"]


def test_http_max_batch_size_one_runs_every_request_alone(tmp_path, rows):
    bodies = [{"inputs": rows[i : i + 1].tolist()} for i in range(4)]
    with make_client(tmp_path, max_batch_size=1) as client:
        wait_ready(client)
        spy = _spy_on_app_model(client)
        responses = _post_concurrently(client, spy, bodies)
    assert all(r.status_code == 200 for r in responses)
    assert spy.calls == [1, 1, 1, 1]


# --- filling the passes ----------------------------------------------------------------------


def test_fill_deadline_keeps_the_promise_then_waits_only_while_requests_arrive():
    from labelcut.app.batching import FILL_FRACTION, GAP_FRACTION, fill_deadline

    wait, pass_time = 0.002, 0.060
    gap, cap = GAP_FRACTION * pass_time, FILL_FRACTION * pass_time
    assert wait < gap < cap
    # A fast model (0.4 ms passes): no later than the promise to the oldest request.
    assert fill_deadline(10.0, 10.0, 10.0, wait, 0.0004) == pytest.approx(10.0 + wait)
    # A slow model (60 ms passes), the queue filled during the pass: the promise has
    # passed, but the clients just answered are about to come back, so the worker waits
    # a gap (a fraction of the pass) after becoming free ...
    assert fill_deadline(9.90, 9.95, 10.0, wait, pass_time) == pytest.approx(10.0 + gap)
    # ... extended by each arrival, up to half a pass after it became free.
    early = 10.0 + (cap - gap) / 2
    assert fill_deadline(9.90, early, 10.0, wait, pass_time) == pytest.approx(early + gap)
    assert fill_deadline(9.90, 10.0 + cap - 0.001, 10.0, wait, pass_time) == pytest.approx(
        10.0 + cap
    )
    # Never earlier than the promise, whatever the pass time.
    assert fill_deadline(10.0, 10.0, 10.0, 0.05, 0.0) == pytest.approx(10.05)


def test_concurrent_traffic_fills_the_next_pass_and_a_lone_request_goes_at_once(model, rows):
    spy = SpyModel(model)

    async def scenario():
        # A long max_wait: the passes are decided by rows arriving, never by a clock.
        batcher = Batcher(lambda: spy, max_batch_size=4, max_wait=30.0)
        try:
            lone = await asyncio.wait_for(batcher.submit(rows[:1]), timeout=10)
            await _queue_behind_a_held_pass(batcher, spy, rows[:1], [rows[1:2], rows[2:3]])
            # Traffic is concurrent now: requests sent one by one share the next pass.
            tails = []
            for i in range(4):
                tails.append(asyncio.ensure_future(batcher.submit(rows[i : i + 1])))
                await asyncio.sleep(0)
            outputs = await asyncio.wait_for(asyncio.gather(*tails), timeout=10)
            return lone, outputs, batcher.stats
        finally:
            await batcher.close()

    lone, outputs, stats = asyncio.run(scenario())
    assert spy.calls == [1, 1, 2, 4]
    for i, out in enumerate(outputs):
        np.testing.assert_allclose(out.proba, model.predict_proba(rows[i : i + 1]), atol=1e-6)
    np.testing.assert_allclose(lone.proba, model.predict_proba(rows[:1]), atol=1e-6)
    assert (stats.passes, stats.rows, stats.requests) == (4, 8, 8)
    assert stats.mean_rows_per_pass == 2.0


def test_non_finite_outputs_are_found_per_request(model, rows):
    huge = rows[:2].copy()
    huge[1] = 3e38  # finite inputs that overflow inside the model

    async def scenario():
        batcher = Batcher(lambda: model, max_batch_size=64, max_wait=0.0)
        try:
            return await asyncio.gather(
                batcher.submit(rows[2:3]), batcher.submit(huge, want_logits=True)
            )
        finally:
            await batcher.close()

    fine, bad = asyncio.run(scenario())
    assert not np.isfinite(model.predict_proba(huge[1:])).all()  # the premise
    assert fine.nonfinite_row is None and np.isfinite(fine.proba).all()
    assert bad.nonfinite_row == 1


class _Recorder:
    """Stands in for the DriftMonitor: records what a policy hands it."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def add(self, snapshot, scores, flags) -> None:
        self.rows.append(np.array(scores))


def test_a_shared_policy_decides_the_pass_and_counts_only_answered_rows(model, rows):
    spy = SpyModel(model)
    recorder = _Recorder()
    n_labels = len(model.labels)
    lower, upper = np.full(n_labels, 0.2), np.full(n_labels, 0.6)
    policy = Policy("abstain", upper, lower=lower, drift=recorder, snapshot="s")
    huge = rows[:2].copy()
    huge[1] = 3e38  # finite inputs that overflow inside the model

    async def scenario():
        batcher = Batcher(lambda: spy, max_batch_size=64, max_wait=0.0)
        try:
            return await _queue_behind_a_held_pass(
                batcher, spy, rows[:1], [rows[1:4], huge, rows[4:6]], policy=policy
            )
        finally:
            await batcher.close()

    head, a, bad, b = asyncio.run(scenario())
    assert spy.calls == [1, 7]  # the three queued requests shared one pass
    assert bad.nonfinite_row == 1 and a.nonfinite_row is None and b.nonfinite_row is None
    for out, x in ((head, rows[:1]), (a, rows[1:4]), (b, rows[4:6])):
        p = model.predict_proba(x).astype(np.float64)
        np.testing.assert_allclose(out.proba, p, atol=1e-6)
        assert np.array_equal(out.decisions, p >= upper)
        assert np.array_equal(out.uncertain, (p >= lower) & (p < upper))
    # The refused request's rows were not counted; the others were, pass by pass.
    counted = np.concatenate(recorder.rows)
    expected = np.concatenate([head.proba, a.proba, b.proba])
    np.testing.assert_allclose(counted, expected, atol=0)
