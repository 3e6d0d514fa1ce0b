"""The cross-fitted estimate of issue 20: folds, per-fold tunes and the pooled figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelcut.tuning import estimate as est
from labelcut.tuning import tune_thresholds


def synthetic(n: int, seed: int, prevalence=(0.05, 0.15, 0.3, 0.45)):
    """Scores with a known optimum: positives ~ U(0.35, 1), negatives ~ U(0, 0.65)."""
    rng = np.random.default_rng(seed)
    targets = rng.random((n, len(prevalence))) < np.array(prevalence)
    noise = rng.random(targets.shape)
    scores = np.where(targets, 0.35 + 0.65 * noise, 0.65 * noise)
    return scores, targets.astype(np.uint8)


def test_folds_spread_every_label_s_positives():
    rng = np.random.default_rng(0)
    targets = np.zeros((500, 4), dtype=np.uint8)
    for label, count in enumerate((10, 7, 23, 250)):
        targets[rng.choice(500, count, replace=False), label] = 1
    folds = est.spread_folds(torch.from_numpy(targets), 5, seed=1)
    for label, count in enumerate((10, 7, 23, 250)):
        per_fold = np.bincount(folds[targets[:, label] == 1], minlength=5)
        # The rarest labels are dealt first: within one; a common label within 10% of its share.
        assert per_fold.max() - per_fold.min() <= (1 if count < 25 else 5), (label, per_fold)
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize(
    "objective, extra",
    [("f1", {}), ("fbeta", {"beta": 2.0}), ("recall_at_precision", {"target": 0.7})],
)
def test_each_fold_is_tuned_exactly_as_a_tune_of_the_other_folds(objective, extra):
    scores, targets = synthetic(1500, 2)
    scores = np.round(scores, 3)  # ties
    result = tune_thresholds(
        scores, targets, objective, strategy="per_label", n_bootstrap=0, **extra
    )
    plan = est.FoldPlan.build(torch.from_numpy(targets), seed=0)
    oof = np.zeros(targets.shape, dtype=bool)
    for fold in range(5):
        train = plan.folds != fold
        own = tune_thresholds(
            scores[train],
            targets[train],
            objective,
            strategy="per_label",
            n_bootstrap=0,
            estimate=False,
            **extra,
        )
        oof[~train] = scores[~train] >= own.thresholds
    tp = (oof & (targets == 1)).sum(0)
    f1 = 2 * tp / (oof.sum(0) + targets.sum(0))
    report = result.to_dict()
    assert report["summary"]["macro_f1"]["cross_fitted"] == pytest.approx(f1.mean(), abs=1e-12)
    assert [e["cross_fitted_f1"] for e in report["per_label"]] == pytest.approx(f1.tolist())
    micro = 2 * tp.sum() / (oof.sum() + targets.sum())
    assert report["summary"]["micro_f1"]["cross_fitted"] == pytest.approx(micro, abs=1e-12)


@pytest.mark.parametrize("strategy", ["per_label", "shrunk", "global"])
def test_expected_is_near_new_data_and_its_interval_covers_it(strategy):
    scores, targets = synthetic(3000, 3)
    fresh_scores, fresh_targets = synthetic(200_000, 4)
    result = tune_thresholds(scores, targets, strategy=strategy, n_bootstrap=0)
    predicted = fresh_scores >= result.thresholds
    tp = (predicted & (fresh_targets == 1)).sum(0)
    test_macro = float((2 * tp / (predicted.sum(0) + fresh_targets.sum(0))).mean())
    summary = result.to_dict()["summary"]["macro_f1"]
    low, high = summary["expected_interval"]
    assert low <= summary["expected"] <= high
    assert abs(summary["expected"] - test_macro) < 0.03
    assert low <= test_macro <= high
    # The known optimum: each label's threshold near where the two densities cross.
    assert np.all(np.abs(result.thresholds - 0.5) < 0.2)


def test_labels_too_rare_for_folds_get_null_and_a_reason():
    scores, targets = synthetic(400, 5, prevalence=(0.3, 0.3))
    targets[:, 1] = 0
    targets[:7, 1] = 1  # 7 positives: fewer than 2 per fold
    report = tune_thresholds(scores, targets, n_bootstrap=0).to_dict(["common", "rare"])
    common, rare = report["per_label"]
    assert isinstance(common["expected_f1"], float) and common["expected_f1_reason"] is None
    assert rare["expected_f1"] is None and "7 positive(s)" in rare["expected_f1_reason"]
    assert isinstance(report["summary"]["macro_f1"]["expected"], float)


def test_estimate_false_and_too_few_rows():
    scores, targets = synthetic(200, 6)
    off = tune_thresholds(scores, targets, n_bootstrap=0, estimate=False)
    assert off.estimate is None
    assert "expected" not in off.to_dict()["summary"]["macro_f1"]
    assert "expected_f1" not in off.to_dict()["per_label"][0]
    on = tune_thresholds(scores, targets, n_bootstrap=0)
    np.testing.assert_array_equal(on.thresholds, off.thresholds)
    tiny = tune_thresholds(scores[:6], targets[:6], n_bootstrap=0).to_dict()
    assert tiny["summary"]["macro_f1"]["expected"] is None
    assert "too few" in tiny["summary"]["macro_f1"]["expected_reason"]
    with pytest.raises(ValueError, match="estimate must be True or False"):
        tune_thresholds(scores, targets, estimate="yes")


def test_the_estimate_of_issue_18_objectives_refits_each_fold():
    scores, targets = synthetic(600, 7)
    result = tune_thresholds(scores, targets, "cost", cost_fn=3.0, n_bootstrap=0)
    plan = est.FoldPlan.build(torch.from_numpy(targets), seed=0)
    oof = np.zeros(targets.shape, dtype=bool)
    for fold in range(5):
        train = plan.folds != fold
        own = tune_thresholds(
            scores[train], targets[train], "cost", cost_fn=3.0, n_bootstrap=0, estimate=False
        )
        oof[~train] = scores[~train] >= own.thresholds
    tp = (oof & (targets == 1)).sum(0)
    expected = float((2 * tp / (oof.sum(0) + targets.sum(0))).mean())
    assert result.to_dict()["summary"]["macro_f1"]["cross_fitted"] == pytest.approx(expected)


@pytest.mark.parametrize("strategy", ["shrunk", "global"])
def test_shared_strategies_match_tuning_the_other_folds_closely(strategy):
    # The folds' shared threshold is the best of every 4th pooled bucket edge, so the
    # out-of-fold figures come within a hair of tuning each fold's complement directly.
    scores, targets = synthetic(2000, 8, prevalence=(0.02, 0.05, 0.1, 0.3, 0.5))
    result = tune_thresholds(scores, targets, strategy=strategy, n_bootstrap=0)
    plan = est.FoldPlan.build(torch.from_numpy(targets), seed=0)
    oof = np.zeros(targets.shape, dtype=bool)
    for fold in range(5):
        train = plan.folds != fold
        direct = tune_thresholds(
            scores[train], targets[train], strategy=strategy, n_bootstrap=0, estimate=False
        )
        oof[~train] = scores[~train] >= direct.thresholds
    tp = (oof & (targets == 1)).sum(0)
    macro = float((2 * tp / (oof.sum(0) + targets.sum(0))).mean())
    micro = 2 * tp.sum() / (oof.sum() + targets.sum())
    summary = result.to_dict()["summary"]
    assert summary["macro_f1"]["cross_fitted"] == pytest.approx(macro, abs=0.01)
    assert summary["micro_f1"]["cross_fitted"] == pytest.approx(micro, abs=0.01)


@pytest.mark.parametrize("strategy", ["per_label", "shrunk"])
def test_the_estimate_is_the_same_when_own_optima_come_from_the_torch_backend(
    monkeypatch, strategy
):
    # On CUDA the own optima come from the torch search and the sorted pass still runs
    # for the folds. Here the torch search runs on the CPU, behind a device that says cuda.
    from types import SimpleNamespace

    from labelcut.tuning import _checks, _search, tune
    from labelcut.tuning.tune import _Tuning

    scores, targets = synthetic(800, 9)
    expected = tune_thresholds(scores, targets, strategy=strategy, n_bootstrap=0).estimate
    real = _search.tune_labels_torch
    monkeypatch.setattr(
        tune._search,
        "tune_labels_torch",
        lambda s, t, spec, device: real(s, t, spec, torch.device("cpu")),
    )
    spec = _checks.check_spec(
        objective="f1",
        beta=1.0,
        target=None,
        min_positives=1,
        fallback=0.5,
        strategy=strategy,
        shrinkage=6.0,
        n_bootstrap=0,
        seed=0,
        confidence=0.9,
    )
    found = _Tuning(
        torch.from_numpy(scores),
        torch.from_numpy(targets),
        spec,
        SimpleNamespace(type="cuda"),
        False,
    ).run()
    assert found.estimate == expected


def test_many_labels_get_fewer_row_groups_and_bounded_chunks(monkeypatch):
    # The (3, groups, labels) sums and the (chunk rows, labels) work arrays stay bounded
    # however many labels: fewer groups above GROUP_BUDGET / MAX_GROUPS labels, shorter
    # chunks for wide rows; the pooled figures do not depend on either.
    assert est.group_count(est.GROUP_BUDGET // est.MAX_GROUPS) == (est.MAX_GROUPS)
    assert est.group_count(10**6) == est.MIN_GROUPS
    rng = np.random.default_rng(21)
    scores = rng.random((3000, 30))
    targets = (rng.random((3000, 30)) < scores).astype(np.uint8)
    plan = est.FoldPlan.build(torch.from_numpy(targets), 0)
    thresholds = np.full((plan.n_folds, 30), 0.5)
    inputs = (torch.from_numpy(scores), torch.from_numpy(targets), plan, thresholds, 0)
    wide = est._group_counts(*inputs)
    monkeypatch.setattr(est, "GROUP_BUDGET", 30 * 150)
    monkeypatch.setattr(est, "_CHUNK_ELEMENTS", 30 * 7)  # 7-row chunks
    narrow = est._group_counts(*inputs)
    assert wide[0].shape == (est.MAX_GROUPS, 30) and narrow[0].shape == (150, 30)
    for many, few in zip(wide, narrow, strict=True):
        np.testing.assert_array_equal(many.sum(0), few.sum(0))  # the same pooled counts


def test_no_information_f1_is_the_f1_of_decisions_shuffled_against_the_truth():
    # Brute force: shuffle each label's decisions many times against its targets.
    rng = np.random.default_rng(30)
    targets = (rng.random((400, 3)) < np.array([0.1, 0.3, 0.6])).astype(np.uint8)
    decisions = rng.random((400, 3)) < np.array([0.2, 0.3, 0.5])
    per_label, micro = est.no_information_f1(targets.sum(0), decisions.sum(0), 400)
    draws = np.array([rng.permutation(decisions) for _ in range(3000)])  # rows shuffled
    tp = (draws & (targets == 1)).sum(1)  # (draws, L)
    f1 = 2 * tp / (decisions.sum(0) + targets.sum(0))
    # E[F1] = E[2 TP / (PP + P)] with PP and P fixed: exactly the mean of the draws' F1.
    np.testing.assert_allclose(per_label, f1.mean(0), atol=0.005)
    pooled = 2 * tp.sum(1) / (decisions.sum() + targets.sum())
    assert micro == pytest.approx(pooled.mean(), abs=0.005)
    assert est.no_information_f1(np.zeros(2), np.zeros(2), 10)[1] == 0.0


@pytest.mark.parametrize(
    "in_sample, cross_fitted, floor, weight",
    [
        (0.60, 0.60, 0.10, 0.632),  # no overfitting measured
        (0.55, 0.60, 0.10, 0.632),  # cross-fitted above in-sample: no overfitting either
        (0.60, 0.10, 0.10, 1.0),  # all of the in-sample edge over no information is overfitting
        (0.60, 0.05, 0.10, 1.0),  # worse than no information: clipped
        (0.60, 0.35, 0.10, 0.632 / (1 - 0.368 * 0.5)),  # half of it
        (0.08, 0.05, 0.10, 0.632),  # in-sample below no information: no rate
    ],
)
def test_out_of_fold_weight_follows_the_632_plus_rule(in_sample, cross_fitted, floor, weight):
    assert est.out_of_fold_weight(in_sample, cross_fitted, floor) == pytest.approx(weight)


def test_expected_blends_the_cross_fitted_and_in_sample_figures():
    scores, targets = synthetic(600, 31)
    for strategy in ("per_label", "adaptive"):
        result = tune_thresholds(scores, targets, strategy=strategy, n_bootstrap=0)
        report = result.to_dict()
        floor, micro_floor = est.no_information_f1(
            result.support, result.predicted_positives, result.n_samples
        )
        for key, in_sample, lowest in (
            ("macro_f1", result.macro_f1, floor.mean()),
            ("micro_f1", result.micro_f1, micro_floor),
        ):
            pair = report["summary"][key]
            weight = est.out_of_fold_weight(in_sample, pair["cross_fitted"], lowest)
            assert pair["out_of_fold_weight"] == pytest.approx(weight)
            blend = (1 - weight) * in_sample + weight * pair["cross_fitted"]
            assert pair["expected"] == pytest.approx(blend)
            # Centred on the blend; the half-width is the cross-fitted one's and the
            # optimism the blend keeps, in quadrature.
            low, high = pair["expected_interval"]
            old_low, old_high = pair["cross_fitted_interval"]
            kept = (1 - weight) * max(in_sample - pair["cross_fitted"], 0.0)
            half = np.hypot((old_high - old_low) / 2, kept)
            assert (low, high) == pytest.approx((pair["expected"] - half, pair["expected"] + half))
            assert high - low >= old_high - old_low - 1e-12
        weight = report["summary"]["macro_f1"]["out_of_fold_weight"]
        labels = report["per_label"]
        for entry, own in zip(labels, result.f1, strict=True):
            mixed = (1 - weight) * own + weight * entry["cross_fitted_f1"]
            assert entry["expected_f1"] == pytest.approx(mixed)
        mean = np.mean([entry["expected_f1"] for entry in labels])
        assert report["summary"]["macro_f1"]["expected"] == pytest.approx(mean)
        assert ".632+" in report["summary"]["estimate"]


def test_an_overfitting_tune_leans_on_the_folds():
    # Pure noise: per_label's in-sample F1 is all overfitting, so the expected figure
    # stays near the cross-fitted one, far below the in-sample one.
    rng = np.random.default_rng(32)
    scores = rng.random((300, 6))
    targets = (rng.random((300, 6)) < 0.1).astype(np.uint8)
    result = tune_thresholds(scores, targets, strategy="per_label", n_bootstrap=0)
    pair = result.to_dict()["summary"]["macro_f1"]
    assert pair["out_of_fold_weight"] > 0.9
    assert pair["tuned"] - pair["expected"] > 0.8 * (pair["tuned"] - pair["cross_fitted"])
