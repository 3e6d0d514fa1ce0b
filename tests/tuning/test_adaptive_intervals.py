"""The "adaptive" strategy's bootstrap intervals are intervals of its reported thresholds.

Its replicates re-tune what the kept rule reads off the observed curve (the "shrunk"
threshold inside the blends, or the own optimum for the "observed" base) and map it
through the kept rule (:class:`tuning.adaptive.ReplicatePull`). Before, they were plain
"shrunk" replicates, and the reported threshold fell outside its own interval for 30-70%
of the labels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelcut.tuning import bootstrap, tune_thresholds
from labelcut.tuning._checks import TuningSpec
from labelcut.tuning._sorted import candidates_from_sorted, packed_block
from labelcut.tuning.adaptive import (
    BLEND_WEIGHT,
    AdaptiveChoice,
    ReplicatePull,
    _logit,
    _sigmoid,
)

# 201 replicates: the 5th and 95th percentiles are order statistics 10 and 190 exactly (no
# interpolation), so a monotone map of the replicates maps the interval ends.
REPLICATES = 201


def separable_enough(n: int, n_labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores of noisy logits, scaled up to 6x as a confident model's saturate;
    prevalences log-uniform in 0.5-40% (rare labels lean most on the shared threshold)."""
    rng = np.random.default_rng(seed)
    prevalence = np.exp(rng.uniform(np.log(0.005), np.log(0.4), n_labels))
    targets = (rng.random((n, n_labels)) < prevalence).astype(np.uint8)
    logits = rng.normal(size=(n, n_labels)) + 1.8 * targets + np.log(prevalence) - 0.9
    logits *= rng.uniform(1.0, 6.0, n_labels)
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32), targets


def label_candidates(scores: np.ndarray, targets: np.ndarray, label: int):
    keys = packed_block(torch.from_numpy(scores), torch.from_numpy(targets), label, label + 1)[0]
    keys.sort()
    return candidates_from_sorted(keys, np.float32)


def spec(strategy: str) -> TuningSpec:
    return TuningSpec("f1", 1.0, None, 1, 0.5, strategy=strategy, n_bootstrap=REPLICATES)


def test_a_replicate_that_repeats_the_data_gives_the_reported_threshold():
    rng = np.random.default_rng(3)
    for _ in range(200):
        mixed, at_data = rng.uniform(1e-4, 1 - 1e-4, 2)
        rho = float(rng.choice([0.25, 0.5, 0.75, 1.0]))
        pull = ReplicatePull(float(_logit(np.array([mixed]))[0]), rho, 0.5, "shrunk", at_data)
        reported = _sigmoid(rho * _logit(np.array([mixed])))
        assert pull.thresholds(np.array([at_data]))[0] == reported[0]
    plain = ReplicatePull(0.0, 0.0, 0.0, "shrunk", 0.3)  # plain 0.5: no replicate moves it
    assert np.all(plain.thresholds(np.array([1e-6, 0.3, 0.99])) == 0.5)


def test_the_pulled_interval_is_the_kept_rule_applied_to_the_re_tuned_one():
    scores, targets = separable_enough(4000, 3, seed=1)
    shared = 0.31
    for label in range(3):
        candidates = label_candidates(scores, targets, label)
        threshold = 0.4
        plain = bootstrap.label_intervals(label, candidates, threshold, spec("adaptive"), shared)
        pull = ReplicatePull(
            float(_logit(np.array([0.2]))[0]), 0.75, 1 - BLEND_WEIGHT, "shrunk", 0.35
        )
        pulled = bootstrap.label_intervals(
            label, candidates, threshold, spec("adaptive"), shared, pull
        )
        np.testing.assert_array_equal(pulled[:2], pull.thresholds(plain[:2]))
        np.testing.assert_array_equal(pulled[2:], plain[2:])  # F1 at the threshold: unchanged
        # The own optimum ("observed" base): the per_label replicates, mapped.
        own = bootstrap.label_intervals(label, candidates, threshold, spec("per_label"), None)
        pull = ReplicatePull(float(_logit(np.array([0.6]))[0]), 0.5, 1.0, "own", 0.45)
        pulled = bootstrap.label_intervals(
            label, candidates, threshold, spec("adaptive"), shared, pull
        )
        np.testing.assert_array_equal(pulled[:2], pull.thresholds(own[:2]))


def _logits(values) -> np.ndarray:
    return _logit(np.asarray(values, dtype=np.float64))


def interval_fit(rows: list[dict]) -> tuple[int, float]:
    """(labels whose threshold is outside its interval, mean distance of the threshold
    from the interval's middle in logit, in half-widths)."""
    outside, offsets = 0, []
    for row in rows:
        low, high = row["threshold_interval"]
        outside += not low <= row["threshold"] <= high
        low, high = _logits([low, high])
        offsets.append(
            abs(_logits(row["threshold"]) - (low + high) / 2) / max((high - low) / 2, 1e-3)
        )
    return outside, float(np.mean(offsets))


def test_every_label_gets_the_kept_rule_and_it_repeats_the_reported_threshold(
    monkeypatch: pytest.MonkeyPatch,
):
    seen: dict[int, ReplicatePull | None] = {}
    original = bootstrap.label_intervals

    def recording(label, candidates, threshold, spec, shared, pull=None):
        seen[label] = pull
        return original(label, candidates, threshold, spec, shared, pull)

    monkeypatch.setattr(bootstrap, "label_intervals", recording)
    scores, targets = separable_enough(5000, 12, seed=6)
    result = tune_thresholds(scores, targets, estimate=False)
    assert sorted(seen) == list(range(12))
    for label, pull in seen.items():
        assert isinstance(pull, ReplicatePull)
        again = pull.thresholds(np.array([pull.at_data]))[0]
        assert again == pytest.approx(float(result.thresholds[label]), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize(("n", "n_labels", "seed"), [(5000, 20, 6), (10000, 12, 7), (50000, 16, 3)])
def test_intervals_sit_around_the_reported_thresholds(
    n: int, n_labels: int, seed: int, monkeypatch: pytest.MonkeyPatch
):
    """Against the old intervals ("shrunk" replicates, no pull) on the same data: fewer
    thresholds outside their interval, and closer to its middle on average."""
    scores, targets = separable_enough(n, n_labels, seed)
    pulled = interval_fit(tune_thresholds(scores, targets, estimate=False).to_dict()["per_label"])
    monkeypatch.setattr(AdaptiveChoice, "replicate_pulls", lambda self, shrunk, own: None)
    unpulled = interval_fit(tune_thresholds(scores, targets, estimate=False).to_dict()["per_label"])
    assert pulled[0] <= 1  # a percentile interval need not hold the estimate, but nearly
    assert pulled[0] < unpulled[0]
    assert pulled[1] < unpulled[1]


def test_plain_half_has_a_point_interval(monkeypatch: pytest.MonkeyPatch):
    """Where no candidate's gain holds, every threshold is 0.5 in every replicate."""
    import labelcut.tuning.adaptive as module

    original = module.choose

    def half(plugin, shrunk, fold_shrunk) -> AdaptiveChoice:
        chosen = original(plugin, shrunk, fold_shrunk)
        n_labels = len(shrunk)
        return AdaptiveChoice(
            thresholds=np.full(n_labels, 0.5),
            base="0.5",
            rho=0.0,
            tau=chosen.tau,
            plugin=chosen.plugin,
            mixed=np.full(n_labels, 0.5),
            fold_thresholds=np.full_like(chosen.fold_thresholds, 0.5),
            candidates=chosen.candidates,
            scores=chosen.scores,
            lower_bounds=chosen.lower_bounds,
            from_own=np.zeros(n_labels, dtype=bool),
        )

    monkeypatch.setattr(module, "choose", half)
    scores, targets = separable_enough(2000, 4, seed=5)
    rows = tune_thresholds(scores, targets, estimate=False).to_dict()["per_label"]
    assert all(r["threshold"] == 0.5 for r in rows)
    assert all(r["threshold_interval"] == [0.5, 0.5] for r in rows)
    assert any(r["f1_interval"][0] < r["f1_interval"][1] for r in rows)  # F1 still varies
