"""tuning v2: one sorted pass feeds the curves, the pooled threshold and the bootstrap;
one parameter object; bounded bootstrap memory."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from labelcut import tuning
from labelcut.tuning import (
    STRATEGIES,
    TUNE_PARAMETERS,
    compact_curves,
    parameter,
    parameter_fields,
    tune_thresholds,
)

# ---------------------------------------------------------------------------
# return_curves: the service's curves from the tune's own sorted pass


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_returned_curves_equal_compact_curves(strategy, dtype):
    rng = np.random.default_rng(1)
    scores = rng.random((3000, 5)).astype(dtype)
    scores[:, 1] = np.round(scores[:, 1], 2)  # ties: fewer distinct values than points
    targets = rng.random((3000, 5)) < scores * np.array([1.0, 0.8, 0.2, 0.05, 0.0])
    result = tune_thresholds(scores, targets, strategy=strategy, n_bootstrap=20, return_curves=True)
    keep = np.stack([result.thresholds, np.full(5, 0.5)], axis=1)
    expected = compact_curves(scores, targets, keep=keep, max_points=1000)
    assert len(result.curves) == 5
    for ours, theirs in zip(result.curves, expected, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    # Without asking, nothing else changes.
    plain = tune_thresholds(scores, targets, strategy=strategy, n_bootstrap=20)
    assert plain.curves is None
    assert np.array_equal(plain.thresholds, result.thresholds)
    assert np.array_equal(plain.threshold_interval, result.threshold_interval)


def test_returned_curves_end_points_match_sklearn():
    rng = np.random.default_rng(2)
    scores = rng.random((400, 2))
    targets = rng.random((400, 2)) < scores
    result = tune_thresholds(scores, targets, n_bootstrap=0, return_curves=True)
    for j, curve in enumerate(result.curves):
        precision, recall, thresholds = precision_recall_curve(targets[:, j], scores[:, j])
        np.testing.assert_array_equal(curve.thresholds, thresholds)
        np.testing.assert_array_equal(curve.precision, precision)
        np.testing.assert_array_equal(curve.recall, recall)


def test_return_curves_must_be_a_bool():
    with pytest.raises(ValueError, match="return_curves must be True or False"):
        tune_thresholds([[0.2], [0.8]], [[0], [1]], return_curves="yes")


# ---------------------------------------------------------------------------
# the pooled threshold from the per-label sorted pass, against brute force


def brute_force_pooled(scores, targets, objective, target=None, beta=1.0):
    """(lowest pooled score predicted positive, tp, pp) of the best pooled cut, or None."""
    flat, truth = np.asarray(scores, np.float64).ravel(), np.asarray(targets).ravel().astype(int)
    order = np.argsort(-flat, kind="stable")
    flat, truth = flat[order], truth[order]
    positives, best = int(truth.sum()), None
    tp_cum, seen = np.cumsum(truth), np.arange(1, len(flat) + 1)
    last_of_value = np.append(flat[1:] != flat[:-1], True)
    for i in np.flatnonzero(last_of_value)[::-1]:  # increasing score: ">=" keeps later ties
        tp, pp = int(tp_cum[i]), int(seen[i])
        if objective == "f1":
            score = Fraction(2 * tp, pp + positives)
        elif objective == "fbeta":
            b2 = Fraction(beta) ** 2
            score = (1 + b2) * tp / (b2 * positives + pp)
        elif objective == "recall_at_precision":
            if not tp / pp >= target:
                continue
            score = Fraction(tp, positives)
        else:
            if not tp / positives >= target:
                continue
            score = Fraction(tp, pp)
        if best is None or score >= best[0]:
            best = (score, flat[i], tp, pp)
    return None if best is None else best[1:]


def check_pooled(scores, targets, objective, target=None, beta=1.0):
    result = tune_thresholds(
        scores, targets, objective, target=target, beta=beta, strategy="global", n_bootstrap=0
    )
    expected = brute_force_pooled(scores, targets, objective, target, beta)
    if expected is None:
        assert result.global_threshold is None
        return
    lowest, tp, pp = expected
    chosen = np.asarray(scores, np.float64) >= result.global_threshold
    assert np.asarray(scores, np.float64)[chosen].min() == lowest
    assert int(chosen.sum()) == pp == int(result.predicted_positives.sum())
    assert int((chosen & (np.asarray(targets) == 1)).sum()) == tp


@pytest.mark.parametrize(
    ("objective", "target", "beta"),
    [
        ("f1", None, 1.0),
        ("fbeta", None, 3.0),
        ("recall_at_precision", 0.6, 1.0),
        ("precision_at_recall", 0.5, 1.0),
    ],
)
@pytest.mark.parametrize("mantissa_bits", [10, 2])  # 2: wide buckets, refined heavily
def test_pooled_many_labels_ties_and_duplicates(
    monkeypatch, objective, target, beta, mantissa_bits
):
    monkeypatch.setattr(tuning._shared, "_MANTISSA_BITS", mantissa_bits)
    monkeypatch.setattr(tuning._sorted, "_BLOCK_ELEMENTS", 2000)  # many blocks, threads
    rng = np.random.default_rng(30 + mantissa_bits)
    for trial in range(6):
        n, n_labels = int(rng.integers(50, 400)), int(rng.integers(20, 70))
        scores = rng.random((n, n_labels))
        if trial % 2:  # few distinct values shared across labels: heavy pooled ties
            scores = np.round(scores, 1)
        scores[: n // 10] = 1.0  # saturated rows
        scores[-3:, :5] = 0.0
        scores = scores.astype(np.float32 if trial % 3 else np.float64)
        prevalence = rng.uniform(0.01, 0.5, n_labels)
        targets = (rng.random((n, n_labels)) < scores * prevalence * 2).astype(np.uint8)
        check_pooled(scores, targets, objective, target, beta)


def test_pooled_matches_a_sklearn_curve_of_the_flattened_scores():
    rng = np.random.default_rng(40)
    scores = np.round(rng.random((500, 30)), 3)
    targets = rng.random((500, 30)) < scores * 0.3
    result = tune_thresholds(scores, targets, strategy="global", n_bootstrap=0)
    precision, recall, thresholds = precision_recall_curve(targets.ravel(), scores.ravel())
    with np.errstate(invalid="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
    assert result.micro_f1 == pytest.approx(f1.max(), rel=1e-12)
    chosen = scores >= result.global_threshold
    assert scores[chosen].min() == thresholds[len(f1) - 1 - np.argmax(f1[::-1])]


# ---------------------------------------------------------------------------
# bootstrap: the global fallback, chunking, memory


def unreachable_pooled_problem():
    """Label 0 reaches precision 0.9 alone; label 1's 200 negatives at score 1.0 keep
    every pooled cut below precision 0.5, so the shared threshold cannot be tuned."""
    rng = np.random.default_rng(12)
    n = 400
    scores = np.empty((n, 2))
    scores[:, 0] = rng.random(n)
    truth0 = rng.random(n) < scores[:, 0] ** 2
    scores[:, 1] = np.where(np.arange(n) < 200, 1.0, rng.random(n) * 0.5)
    truth1 = (np.arange(n) >= 200) & (rng.random(n) < 0.1)
    return scores, np.stack([truth0, truth1], axis=1)


def test_global_without_a_shared_threshold_gets_per_label_intervals():
    scores, targets = unreachable_pooled_problem()
    kwargs = {"objective": "recall_at_precision", "target": 0.9, "n_bootstrap": 200, "seed": 4}
    result = tune_thresholds(scores, targets, strategy="global", **kwargs)
    own = tune_thresholds(scores, targets, strategy="per_label", **kwargs)
    assert result.global_threshold is None
    assert result.label_strategy[0] == "per_label" and result.status[0] == "ok"
    assert np.array_equal(result.thresholds, own.thresholds)
    low, high = result.threshold_interval[0]
    assert high > low  # it was a zero-width interval at the threshold itself
    np.testing.assert_array_equal(result.threshold_interval, own.threshold_interval)
    np.testing.assert_array_equal(result.f1_interval, own.f1_interval)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bootstrap_chunks_do_not_change_the_answer(monkeypatch, strategy):
    rng = np.random.default_rng(13)
    scores = rng.random((2000, 3))
    targets = rng.random((2000, 3)) < scores * 0.5
    whole = tune_thresholds(scores, targets, strategy=strategy, n_bootstrap=300, seed=2)
    monkeypatch.setattr(tuning.bootstrap, "WORK_BYTES", 50_000)  # a few replicates a chunk
    seen = []
    original = tuning.bootstrap.replicate_chunks

    def spy(n_boot, width):
        chunks = list(original(n_boot, width))
        seen.append(len(chunks))
        return iter(chunks)

    monkeypatch.setattr(tuning.bootstrap, "replicate_chunks", spy)
    chunked = tune_thresholds(scores, targets, strategy=strategy, n_bootstrap=300, seed=2)
    assert max(seen) > 10
    np.testing.assert_array_equal(whole.threshold_interval, chunked.threshold_interval)
    np.testing.assert_array_equal(whole.f1_interval, chunked.f1_interval)


def test_replicate_chunks_stay_under_the_budget():
    for n_boot, width in [(10_000, 513), (10_000, 1), (7, 100_000), (200, 21_000)]:
        chunks = list(tuning.bootstrap.replicate_chunks(n_boot, width))
        assert sum(c.stop - c.start for c in chunks) == n_boot
        largest = max(c.stop - c.start for c in chunks)
        assert largest == 1 or largest * width * 8 * 10 <= tuning.bootstrap.WORK_BYTES


PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys, tracemalloc
    import numpy as np
    from labelcut.tuning import tune_thresholds

    rng = np.random.default_rng(0)
    # Issue 12's case: 1,463 x 14 scores over ~20k distinct values, global, 10,000 replicates.
    scores = rng.integers(0, 100_000, (1463, 14)) / 100_000.0
    targets = (rng.random((1463, 14)) < scores).astype(np.uint8)
    tune_thresholds(scores[:50], targets[:50], strategy="global", n_bootstrap=5)  # warm up
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    result = tune_thresholds(scores, targets, strategy=sys.argv[1], n_bootstrap=10_000)
    _, peak = tracemalloc.get_traced_memory()
    print(json.dumps({"distinct": int(len(np.unique(scores))), "peak_bytes": peak,
                      "width": float(np.ptp(result.threshold_interval, axis=1).max())}))
    """
)


def test_bootstrap_memory_is_bounded_for_many_replicates():
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, "global"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["distinct"] > 15_000
    assert report["width"] > 0
    # Peak of the call's allocations (it was +8.0 GB): under 1 GB, and in fact within the
    # budget of WORK_BYTES per worker thread plus the tune's own small arrays.
    assert report["peak_bytes"] < 1 << 30, report
    threads = tuning._sorted.worker_threads()
    assert report["peak_bytes"] < threads * tuning.bootstrap.WORK_BYTES + (32 << 20), report


# ---------------------------------------------------------------------------
# the one parameter object


def test_parameter_table_matches_tune_thresholds_signature():
    signature = inspect.signature(tune_thresholds).parameters
    tune_fields = [f for f in parameter_fields() if f["group"] == "tune"]
    assert [f["name"] for f in tune_fields] == [
        name
        for name in signature
        if name not in ("scores", "targets", "device", "return_curves", "label_names")
        and parameter(name).group == "tune"
    ]
    # Of the decision options only decision_rule is an argument (abstain tunes two thresholds).
    assert {
        name for name in signature if name in {p["name"] for p in parameter_fields("decision")}
    } == {"decision_rule"}
    for field in tune_fields:
        assert signature[field["name"]].default == field["default"], field["name"]
        if field["choices"] is not None:
            assert field["default"] in field["choices"]
    assert json.loads(json.dumps(parameter_fields())) == parameter_fields()
    names = {f["name"] for f in parameter_fields("decision")}
    assert names == {"decision_rule", "k"}


def bad_values(field):
    """Values just outside a field's bounds (and of the wrong kind)."""
    if field["choices"]:
        return ["no-such-choice"]
    values = []
    if field["minimum"] is not None:
        below = field["minimum"] if field["exclusive_minimum"] else field["minimum"] - 1
        values.append(below if field["kind"] == "int" else float(below))
    if field["maximum"] is not None:
        above = field["maximum"] if field["exclusive_maximum"] else field["maximum"] + 1
        values.append(above if field["kind"] == "int" else float(above) * 1.5)
    if field["kind"] == "int":
        values.append(1.5)
    return values


@pytest.mark.parametrize("field", parameter_fields("tune"), ids=lambda f: f["name"])
def test_every_bound_in_the_table_is_enforced(field):
    scores, targets = np.array([[0.2, 0.7], [0.9, 0.1]]), np.array([[0, 1], [1, 0]])
    base = {"objective": "recall_at_precision", "target": 0.5, "n_bootstrap": 0}
    for value in bad_values(field):
        arguments = {**base, field["name"]: value}
        with pytest.raises(ValueError, match=f"^{field['name']} must be"):
            tune_thresholds(scores, targets, **arguments)
    # Values on inclusive bounds are accepted.
    for bound, exclusive in (("minimum", "exclusive_minimum"), ("maximum", "exclusive_maximum")):
        if field[bound] is not None and not field[exclusive] and field["name"] != "n_bootstrap":
            value = field[bound] if field["kind"] == "int" else float(field[bound])
            tune_thresholds(scores, targets, **{**base, field["name"]: value})


def test_table_bounds_text():
    by_name = {p.name: p for p in TUNE_PARAMETERS}
    assert by_name["beta"].bounds_text() == "(0, 1e+06]"
    assert by_name["target"].bounds_text() == "(0, 1]"
    assert by_name["confidence"].bounds_text() == "(0, 1)"
    assert by_name["min_positives"].bounds_text() == ">= 0"
    assert by_name["k"].bounds_text() == ">= 1"
    assert tuning.parameter("beta").constraints() == {"gt": 0.0, "le": 1e6}
    assert tuning.parameter("n_bootstrap").constraints() == {"ge": 0, "le": 10_000}
    assert tuning.parameter("seed").python_type is int
    table = tuning.parameter_table_markdown().splitlines()
    assert len(table) == 2 + len(TUNE_PARAMETERS)
    assert "| `beta` | float | `1.0` | (0, 1e+06] |" in table[3]


# ---------------------------------------------------------------------------
# the bounded per-label search against the torch backend, which scores every position


@pytest.mark.parametrize("chunk", [3, 64, 1024])
@pytest.mark.parametrize(("objective", "beta"), [("f1", 1.0), ("fbeta", 0.3), ("fbeta", 4.0)])
def test_bounded_search_equals_scoring_every_candidate(monkeypatch, chunk, objective, beta):
    import torch

    from labelcut.tuning._checks import TuningSpec
    from labelcut.tuning._search import tune_labels_cpu, tune_labels_torch

    monkeypatch.setattr(tuning._search, "_CHUNK_POSITIONS", chunk)
    rng = np.random.default_rng(50 + chunk)
    n = 6000
    scores = rng.random((n, 6))
    scores[:, 0] = np.round(scores[:, 0], 2)  # long runs of equal scores across chunk edges
    scores[: n // 4, 1] = 1.0
    scores[:, 2] = np.round(scores[:, 2] * 3) / 3  # four distinct values
    targets = rng.random((n, 6)) < scores * np.array([1.0, 0.6, 0.9, 0.05, 0.01, 0.3])
    spec = TuningSpec(objective, beta, None, 1, 0.5)
    for dtype in (torch.float32, torch.float64):
        score_tensor = torch.from_numpy(scores).to(dtype)
        target_tensor = torch.from_numpy(targets)
        ours = tune_labels_cpu(score_tensor, target_tensor, spec)
        every = tune_labels_torch(score_tensor, target_tensor, spec, torch.device("cpu"))
        assert ours.statuses == every.statuses
        assert np.array_equal(ours.thresholds, every.thresholds)
        assert np.array_equal(ours.true_positives, every.true_positives)
        assert np.array_equal(ours.predicted_positives, every.predicted_positives)


def test_positives_before_any_position():
    from labelcut.tuning._sorted import Candidates

    rng = np.random.default_rng(60)
    for n in (1, 7, 5000, 100_003):
        keys = np.sort(rng.integers(0, 1 << 30, n, dtype=np.int32))
        expected = np.concatenate(([0], np.cumsum(keys & 1)))
        for count in (1, 3, 200, 5000):
            positions = rng.integers(0, n + 1, count)
            found = Candidates(keys, np.float32).positives_before(positions)
            np.testing.assert_array_equal(found, expected[positions])
        candidates = Candidates(keys, np.float32)
        assert candidates.positives == expected[-1]
        np.testing.assert_array_equal(candidates.positives_before(np.arange(n + 1)), expected)


# ---------------------------------------------------------------------------
# diagnosis: co-occurrence from multi-label rows only, chunk by chunk


@pytest.mark.parametrize("chunk_elements", [7, 1 << 22])
def test_never_cooccurring_pairs_match_a_full_product(monkeypatch, chunk_elements):
    import torch

    from labelcut.tuning import diagnose

    monkeypatch.setattr(tuning.diagnosis, "_CHUNK_ELEMENTS", chunk_elements)
    rng = np.random.default_rng(70)
    for trial in range(60):
        n, n_labels = int(rng.integers(1, 200)), int(rng.integers(1, 12))
        targets = rng.random((n, n_labels)) < rng.uniform(0, 0.4, n_labels)
        if trial % 3 == 0:  # mostly one label per row
            targets = np.eye(n_labels, dtype=bool)[rng.integers(0, n_labels, n)]
            targets &= rng.random((n, 1)) < 0.9
        together = targets.T.astype(np.int64) @ targets.astype(np.int64)
        present = np.diag(together) > 0
        never = np.triu(np.ones_like(together, dtype=bool), 1) & (together == 0)
        never &= present[:, None] & present[None, :]
        first, second = np.nonzero(never)
        expected = [[str(a), str(b)] for a, b in zip(first[:50], second[:50], strict=True)]
        for given in (targets, targets.astype(np.float32), torch.from_numpy(targets)):
            report = diagnose(given)
            assert report["never_cooccur"] == expected
            assert report["never_cooccur_count"] == len(first)
            assert report["prevalence"] == (np.diag(together) / n).tolist()
            assert report["label_cardinality"] == pytest.approx(targets.sum() / n)


# ---------------------------------------------------------------------------
# the pipeline with the torch backend (as on CUDA), run on the CPU


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("n_bootstrap", [0, 30])
def test_pipeline_with_the_torch_backend_matches_the_cpu_one(monkeypatch, strategy, n_bootstrap):
    import torch

    from labelcut.tuning._checks import check_spec

    real = tuning._search.tune_labels_torch
    monkeypatch.setattr(
        tuning._search,
        "tune_labels_torch",
        lambda scores, targets, spec, device: real(scores, targets, spec, torch.device("cpu")),
    )

    class FakeCuda:  # what the pipeline asks of a device
        type = "cuda"

    rng = np.random.default_rng(80)
    scores = torch.from_numpy(np.round(rng.random((1500, 4)), 3))
    targets = torch.from_numpy(rng.random((1500, 4)) < scores.numpy() * 0.6)
    spec = check_spec(
        objective="f1",
        beta=1.0,
        target=None,
        min_positives=1,
        fallback=0.5,
        strategy=strategy,
        shrinkage=6.0,
        n_bootstrap=n_bootstrap,
        seed=1,
        confidence=0.9,
    )
    on_torch = tuning.tune._Tuning(scores, targets, spec, FakeCuda(), True).run()
    on_cpu = tuning.tune._Tuning(scores, targets, spec, torch.device("cpu"), True).run()
    assert on_torch.to_dict() == on_cpu.to_dict()
    for ours, theirs in zip(on_torch.curves, on_cpu.curves, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
