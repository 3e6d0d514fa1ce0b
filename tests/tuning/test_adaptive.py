"""The "adaptive" strategy (issue 20): hand-made cases, a known optimum, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

import labelcut.tuning.adaptive as module
from labelcut.tuning import tune_thresholds
from labelcut.tuning.adaptive import BASES, RHOS, TAUS, AdaptiveChoice, adaptive_thresholds
from labelcut.tuning.estimate import FoldPlan


def adaptive(scores: np.ndarray, targets: np.ndarray, seed: int = 0) -> AdaptiveChoice:
    """The strategy with its inputs from the public tune: the fold plan and "shrunk"."""
    plan = FoldPlan.build(torch.from_numpy(targets), seed)
    folds = plan.folds.astype(np.int64)

    def shrunk(rows: np.ndarray) -> np.ndarray:
        result = tune_thresholds(
            scores[rows], targets[rows], strategy="shrunk", n_bootstrap=0, estimate=False
        )
        return np.asarray(result.thresholds, dtype=np.float64)

    per_fold = [shrunk(np.flatnonzero(folds != f)) for f in range(plan.n_folds)]
    return adaptive_thresholds(
        scores,
        targets,
        folds,
        shrunk(np.arange(len(scores))),
        np.stack(per_fold),
    )


def calibrated(n: int, n_labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores uniform in (0, 1), each target drawn with its score as the probability."""
    rng = np.random.default_rng(seed)
    scores = rng.random((n, n_labels))
    return scores, (rng.random((n, n_labels)) < scores).astype(np.int64)


def test_the_rule_is_what_the_docstring_states() -> None:
    scores, targets = calibrated(400, 4, seed=1)
    choice = adaptive(scores, targets)
    assert choice.candidates[0] == ("0.5", 0.0)
    assert choice.candidates[1:] == tuple((b, r) for b in BASES for r in RHOS if r > 0)
    assert choice.scores.shape == choice.lower_bounds.shape == (len(choice.candidates),)
    # The kept candidate has the largest lower bound (gain less one standard error).
    kept = choice.candidates.index((choice.base, choice.rho))
    assert choice.lower_bounds[kept] == choice.lower_bounds.max()
    assert choice.lower_bounds[0] == 0.0
    assert np.all(choice.lower_bounds[1:] <= choice.scores[1:] - choice.scores[0] + 1e-12)
    assert choice.base in BASES and choice.rho in RHOS  # calibrated scores: tuning pays
    assert choice.tau in TAUS
    logit = np.log(choice.mixed) - np.log1p(-choice.mixed)
    np.testing.assert_allclose(choice.thresholds, 1 / (1 + np.exp(-choice.rho * logit)))
    assert choice.fold_thresholds.shape == (5, 4)
    assert np.all((choice.thresholds > 0) & (choice.thresholds < 1))


def test_the_estimates_fold_thresholds_are_the_kept_candidate_without_each_fold() -> None:
    scores, targets = calibrated(400, 4, seed=1)
    folds = FoldPlan.build(torch.from_numpy(targets), 0).folds.astype(np.int64)
    shrunk, fold_shrunk = np.full(4, 0.4), np.full((5, 4), 0.4)
    found = module.plugin_optima(scores, targets, folds, 5)
    choice = module.choose(found, shrunk, fold_shrunk)
    assert choice.base in BASES
    by_fold = module._bases(found, shrunk, fold_shrunk)[choice.base][1]
    expected = module._sigmoid(choice.rho * module._logit(by_fold))
    np.testing.assert_array_equal(choice.fold_thresholds, expected)


def _piled(n: int, n_labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores piled near 0 and 1 like naive Bayes', with noise: thresholds barely matter."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, n_labels)) < 0.4).astype(np.int64)
    sign = np.where(targets == 1, 1.0, -1.0)
    logits = sign * rng.uniform(0, 12, (n, n_labels)) + rng.normal(0, 4, (n, n_labels))
    return 1 / (1 + np.exp(-logits)), targets


def test_a_gain_within_its_standard_error_keeps_plain_half(monkeypatch) -> None:
    # 100 rows of piled scores: some tuned candidate beats 0.5 out of fold by 0.0176
    # (macro + micro), but by less than one standard error of the paired gain, so the rule
    # keeps 0.5 (the fold thresholds too). Without the discount it would tune.
    scores, targets = _piled(100, 3, seed=26)
    choice = adaptive(scores, targets)
    assert choice.scores.max() > choice.scores[0] + 0.01
    assert choice.base == "0.5" and choice.rho == 0.0
    np.testing.assert_array_equal(choice.thresholds, 0.5)
    monkeypatch.setattr(module, "STANDARD_ERRORS", 0.0)
    assert adaptive(scores, targets).base != "0.5"


def test_standard_errors_match_the_rows_brute_force() -> None:
    # The counted (cell) variance equals the sum over rows and labels of the squared
    # paired differences of the first-order terms, computed here row by row.
    rng = np.random.default_rng(12)
    n, n_labels, n_folds = 300, 5, 5
    scores = rng.random((n, n_labels))
    targets = (rng.random((n, n_labels)) < scores**2).astype(np.int64)
    folds = rng.integers(0, n_folds, n)
    calibration = module._Calibration(scores, targets, folds, n_folds)
    candidates = np.concatenate(
        [np.full((1, n_folds, n_labels), 0.5), rng.uniform(0.05, 0.95, (6, n_folds, n_labels))]
    )
    found, errors = module._scores_and_errors(
        module._fold_positives(calibration),
        *module._out_of_fold_counts(calibration, candidates),
    )
    y = targets == 1
    terms, expected = [], []
    for cut in candidates:
        decided = scores >= cut[folds]
        tp, pp, positives = (decided & y).sum(0), decided.sum(0), y.sum(0)
        f1 = 2 * tp / (pp + positives)
        pooled = pp.sum() + positives.sum()
        micro = 2 * tp.sum() / pooled
        weight = module.MACRO_WEIGHT
        expected.append(weight * f1.mean() + micro)
        a = weight / (n_labels * (pp + positives)) + 1 / pooled
        b = weight * f1 / (n_labels * (pp + positives)) + micro / pooled
        terms.append(decided * (2 * a * y - b) - y * b)
    np.testing.assert_allclose(found, expected)
    np.testing.assert_allclose(errors, [np.sqrt(((t - terms[0]) ** 2).sum()) for t in terms])


def test_the_observed_base_decides_as_per_label_does() -> None:
    scores, targets = calibrated(300, 5, seed=13)
    folds = FoldPlan.build(torch.from_numpy(targets), 0).folds.astype(np.int64)
    found = module.plugin_optima(scores, targets, folds, 5)
    per_label = tune_thresholds(
        scores, targets, strategy="per_label", n_bootstrap=0, estimate=False
    ).thresholds
    np.testing.assert_array_equal(scores >= found.observed, scores >= per_label)
    assert found.fold_observed.shape == (5, 5) and np.isfinite(found.fold_observed).all()


@pytest.mark.parametrize("n", [200, 3000])
def test_perfectly_separable_labels_are_separated_and_ties_go_to_half(n: int) -> None:
    rng = np.random.default_rng(2)
    targets = (rng.random((n, 3)) < 0.4).astype(np.int64)
    scores = np.where(targets == 1, rng.uniform(0.7, 1.0, (n, 3)), rng.uniform(0, 0.3, (n, 3)))
    choice = adaptive(scores, targets)
    # Every base and pull leaves each threshold in the gap, so every candidate scores
    # 2 x macro 1 + micro 1 out of fold, no gain, and the tie goes to plain 0.5.
    np.testing.assert_allclose(choice.scores, module.MACRO_WEIGHT + 1.0)
    assert choice.base == "0.5" and choice.rho == 0.0
    np.testing.assert_array_equal(choice.thresholds, 0.5)
    assert np.all((choice.plugin > 0.3) & (choice.plugin < 0.7))


@pytest.mark.parametrize("where", ["top", "middle"])
def test_one_positive_label_does_not_flood_positives(where: str) -> None:
    scores, targets = calibrated(300, 3, seed=3)
    targets[:, 2] = 0
    row = int(np.argmax(scores[:, 2])) if where == "top" else int(np.argsort(scores[:, 2])[150])
    targets[row, 2] = 1
    choice = adaptive(scores, targets)
    predicted = (scores >= choice.thresholds).sum(0)
    # One positive is no evidence for a low threshold: the label keeps few rows.
    assert predicted[2] < 0.2 * len(scores)
    assert predicted[2] < min(predicted[0], predicted[1])
    assert np.isfinite(choice.thresholds).all()


def test_a_label_without_positives_predicts_fewer_rows_than_its_neighbours() -> None:
    scores, targets = calibrated(300, 3, seed=4)
    targets[:, 1] = 0
    choice = adaptive(scores, targets)
    predicted = (scores >= choice.plugin).sum(0)
    # Its calibration map says "rarely positive": its plug-in optimum keeps few rows.
    assert predicted[1] < min(predicted[0], predicted[2])
    assert np.isfinite(choice.thresholds).all()


@pytest.mark.parametrize("n", [120, 3000])  # distinct scores as units; logit bins
def test_all_scores_equal_gives_all_or_nothing(n: int) -> None:
    rng = np.random.default_rng(5)
    targets = (rng.random((n, 2)) < 0.5).astype(np.int64)
    scores = np.full((n, 2), 0.3)
    choice = adaptive(scores, targets)
    decided = scores >= choice.thresholds
    assert np.isfinite(choice.thresholds).all()
    for j in range(2):
        assert decided[:, j].all() or not decided[:, j].any()


def test_one_label_plugin_is_the_expected_f1_optimum_of_its_platt_map() -> None:
    # With one label the pooled map is the label's own (the prior pulls nowhere) and
    # macro = micro: the plug-in optimum is the brute-force argmax of the expected F1
    # under the maximum-likelihood Platt map, fitted here by scikit-learn as the oracle.
    rng = np.random.default_rng(6)
    scores = rng.random((500, 1))
    targets = (rng.random((500, 1)) < scores**2).astype(np.int64)  # miscalibrated
    choice = adaptive(scores, targets)
    x = np.log(scores) - np.log1p(-scores)
    platt = LogisticRegression(C=np.inf).fit(x, targets[:, 0])
    q = platt.predict_proba(x)[:, 1]
    cuts = np.unique(scores[:, 0])
    expected = [
        2 * q[scores[:, 0] >= t].sum() / ((scores[:, 0] >= t).sum() + q.sum()) for t in cuts
    ]
    best = cuts[int(np.argmax(expected))]
    np.testing.assert_array_equal(scores[:, 0] >= choice.plugin[0], scores[:, 0] >= best)


def test_calibrated_scores_reach_the_known_optimum() -> None:
    # Scores U(0, 1) with P(y = 1 | s) = s: F1(t) = (1 - t^2) / (1.5 - t), maximal at
    # t* = (3 - sqrt 5) / 2 = 0.382 with F1* = 0.764 (= 2 t*, Lipton et al. 2014).
    scores, targets = calibrated(20_000, 2, seed=7)
    choice = adaptive(scores, targets)
    best = (3 - np.sqrt(5)) / 2
    np.testing.assert_allclose(choice.plugin, best, atol=0.03)
    reached = f1_score(targets, scores >= choice.thresholds, average=None)
    at_best = f1_score(targets, scores >= best, average=None)
    assert np.all(reached >= at_best - 0.01)


def test_deterministic_under_the_seed() -> None:
    scores, targets = calibrated(300, 4, seed=8)
    first, again = adaptive(scores, targets, seed=3), adaptive(scores, targets, seed=3)
    np.testing.assert_array_equal(first.thresholds, again.thresholds)
    np.testing.assert_array_equal(first.scores, again.scores)
    other = adaptive(scores, targets, seed=4)
    assert other.rho in RHOS and other.thresholds.shape == (4,)


def test_torch_input_gives_the_numpy_answer() -> None:
    scores, targets = calibrated(300, 3, seed=9)
    scores = scores.astype(np.float32)
    plan = FoldPlan.build(torch.from_numpy(targets), 0)
    folds = plan.folds.astype(np.int64)
    shrunk, fold_shrunk = np.full(3, 0.4), np.full((5, 3), 0.4)
    from_numpy = adaptive_thresholds(scores, targets, folds, shrunk, fold_shrunk)
    from_torch = adaptive_thresholds(
        torch.from_numpy(scores), torch.from_numpy(targets), folds, shrunk, fold_shrunk
    )
    np.testing.assert_array_equal(from_numpy.thresholds, from_torch.thresholds)
    assert from_numpy.rho == from_torch.rho and from_numpy.tau == from_torch.tau
    assert from_numpy.base == from_torch.base


def test_no_positives_anywhere_is_plain_half_or_predicts_nothing() -> None:
    scores, targets = calibrated(200, 2, seed=14)
    targets[:] = 0
    choice = adaptive(scores, targets)
    # No positive: every F1 is 0 at any threshold, no candidate gains, 0.5 is kept.
    assert choice.base == "0.5"
    np.testing.assert_array_equal(choice.thresholds, 0.5)


def test_large_sets_are_read_through_a_fixed_subset(monkeypatch) -> None:

    scores, targets = calibrated(3000, 3, seed=11)
    plan = FoldPlan.build(torch.from_numpy(targets), 0)
    folds = plan.folds.astype(np.int64)
    shrunk, fold_shrunk = np.full(3, 0.4), np.full((5, 3), 0.4)
    whole = adaptive_thresholds(scores, targets, folds, shrunk, fold_shrunk)
    monkeypatch.setattr(module, "MAX_ROWS", 1000)
    capped = adaptive_thresholds(scores, targets, folds, shrunk, fold_shrunk)
    again = adaptive_thresholds(
        torch.from_numpy(scores), torch.from_numpy(targets), folds, shrunk, fold_shrunk
    )
    keep = np.sort(np.random.default_rng(3000).choice(3000, 1000, False))
    monkeypatch.setattr(module, "MAX_ROWS", 1 << 18)
    subset = adaptive_thresholds(scores[keep], targets[keep], folds[keep], shrunk, fold_shrunk)
    # The cap reads exactly that subset, the same from numpy and torch, and changes the
    # answer only through it (the whole set's thresholds are a different computation).
    np.testing.assert_array_equal(capped.thresholds, subset.thresholds)
    np.testing.assert_array_equal(capped.thresholds, again.thresholds)
    assert whole.thresholds.shape == capped.thresholds.shape


def _penalised_loss(x, rows, positives, weights, prior, tau) -> np.ndarray:
    z = weights[:, :1] * x + weights[:, 1:]
    loss = positives * np.logaddexp(0, -z) + (rows - positives) * np.logaddexp(0, z)
    return loss.sum(1) + 0.5 * tau * ((weights - prior) ** 2).sum(1)


def _saturating(n: int, n_labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores like an over-confident model's: logits scaled by 1 to 6, so many saturate."""
    rng = np.random.default_rng(seed)
    scores = np.empty((n, n_labels))
    targets = np.empty((n, n_labels), dtype=np.int64)
    prevalence = np.exp(rng.uniform(np.log(0.005), np.log(0.4), n_labels))
    separation = rng.uniform(0.5, 4.0, n_labels)
    for j in range(n_labels):
        positive = rng.random(n) < prevalence[j]
        logits = rng.standard_normal(n, dtype=np.float32) * np.float32(1.5)
        logits += np.where(positive, separation[j], 0.0).astype(np.float32)
        logits += np.float32(np.log(prevalence[j]) - separation[j] / 2)
        logits *= np.float32(rng.uniform(1.0, 6.0))
        scores[:, j] = 1.0 / (1.0 + np.exp(-logits))
        targets[:, j] = positive
    return scores, targets


@pytest.mark.parametrize("tau", TAUS)
def test_platt_fits_reach_the_optimum_where_scores_saturate(tau: float) -> None:
    # On these scores a plain Newton step meets a vanishing curvature and explodes (label 4
    # once ended at a slope of 6,000 and a loss 40,000 times the optimum's); the halved
    # steps must end at the penalised optimum, for every label.
    scores, targets = _saturating(1500, 8, seed=6)
    folds = FoldPlan.build(torch.from_numpy(targets), 0).folds.astype(np.int64)
    calibration = module._Calibration(scores, targets, folds, 5)
    # The units the fits read (above MAX_BINS rows, adjacent bins merged).
    x, rows, positives = calibration.fit_x, calibration.fit_rows[0], calibration.fit_positives[0]
    pooled = module._platt_rows(
        x.reshape(1, -1), rows.reshape(1, -1), positives.reshape(1, -1), np.zeros((1, 2)), 0.0
    )[0]
    prior = np.tile(pooled, (len(x), 1))
    fitted = calibration.fit(0, tau)
    best = _penalised_loss(x, rows, positives, fitted, prior, tau)
    assert np.all(np.abs(fitted) < 100)
    for direction in ([1e-4, 0], [0, 1e-4], [-1e-4, 0], [0, -1e-4]):
        moved = _penalised_loss(x, rows, positives, fitted + np.array(direction), prior, tau)
        assert np.all(best <= moved + 1e-9 * np.abs(moved))


def test_merged_fit_units_keep_the_counts_and_the_rows_mean_logit() -> None:
    scores, targets = _saturating(3000, 5, seed=8)
    folds = FoldPlan.build(torch.from_numpy(targets), 0).folds.astype(np.int64)
    calibration = module._Calibration(scores, targets, folds, 5)
    fine_rows, fit_rows = calibration.rows, calibration.fit_rows
    assert fit_rows.shape[-1] * module.FIT_GROUP >= fine_rows.shape[-1] > fit_rows.shape[-1]
    # Every weighting's rows and positives per label are kept, only grouped.
    np.testing.assert_allclose(fit_rows.sum(-1), fine_rows.sum(-1))
    np.testing.assert_allclose(calibration.fit_positives.sum(-1), calibration.positives.sum(-1))
    # Each merged unit sits at the mean logit of its rows: the rows-weighted logit is kept.
    np.testing.assert_allclose(
        (calibration.fit_x * fit_rows[0]).sum(-1), (calibration.x * fine_rows[0]).sum(-1)
    )


def test_float32_fold_scores_count_exactly_as_float64_comparisons() -> None:
    rng = np.random.default_rng(9)
    values = np.sort(rng.random(2000).astype(np.float32))
    cuts = np.concatenate(
        [values[::97].astype(np.float64), values[::89].astype(np.float64) + 1e-12, [0.0, 1.0]]
    )
    up = module._at_least(cuts, np.float32)
    expected = (values.astype(np.float64)[None, :] >= cuts[:, None]).sum(1)
    found = len(values) - np.searchsorted(values, up, side="left")
    np.testing.assert_array_equal(found, expected)


def test_the_result_says_what_adaptive_kept_and_why() -> None:
    scores, targets = calibrated(2000, 5, seed=12)
    found = tune_thresholds(scores, targets, n_bootstrap=0)
    kept = found.to_dict()["summary"]["adaptive"]
    assert kept["base"] in module.BASES and kept["rho"] in RHOS[1:] and kept["tau"] in TAUS
    # The kept candidate's gain cleared its standard error; the text states both figures.
    assert kept["held_out_gain"] > kept["lower_bound"] > 0
    assert f"{kept['held_out_gain']:+.4f}" in kept["why"] and kept["base"] in kept["why"]
    rng = np.random.default_rng(2)
    separable = (rng.random((600, 3)) < 0.4).astype(np.int64)
    clean = np.where(separable == 1, rng.uniform(0.7, 1, (600, 3)), rng.uniform(0, 0.3, (600, 3)))
    plain = tune_thresholds(clean, separable, n_bootstrap=0).to_dict()["summary"]["adaptive"]
    assert plain["base"] == "0.5" and plain["rho"] == 0.0 and plain["held_out_gain"] == 0.0
    assert plain["why"].startswith("plain 0.5")
    others = tune_thresholds(scores, targets, strategy="shrunk", n_bootstrap=0).to_dict()
    assert "adaptive" not in others["summary"]


def test_many_labels_share_one_unit_budget(monkeypatch) -> None:
    # With more labels than the budget gives MAX_BINS each, every label gets fewer units:
    # the (weightings, labels, units) arrays stay within the budget, and below it (the
    # grids, the bench) nothing changes.
    assert module.unit_bins(module.UNIT_BUDGET // module.MAX_BINS) == module.MAX_BINS
    assert module.unit_bins(10**6) == module.MIN_BINS
    monkeypatch.setattr(module, "UNIT_BUDGET", 40 * 8)  # 40 labels -> 8 units each...
    monkeypatch.setattr(module, "MIN_BINS", 8)
    scores, targets = calibrated(400, 40, seed=14)
    plan = FoldPlan.build(torch.from_numpy(targets), 0)
    found = module.plugin_optima(scores, targets, plan.folds, plan.n_folds)
    assert found.calibration.x.shape == (40, 8)  # ...binned, since 400 rows > 8
    assert found.calibration.rows.shape[1:] == (40, 8)
    assert np.isfinite(found.plugin).all() and ((found.plugin > 0) & (found.plugin <= 1)).all()
    # Each label's rows and positives still add up to its own, whatever the bins.
    np.testing.assert_array_equal(found.calibration.rows[0].sum(1), np.full(40, 400.0))
    np.testing.assert_array_equal(found.calibration.positives[0].sum(1), targets.sum(0))


def test_a_candidate_below_half_s_micro_f1_out_of_fold_is_not_kept() -> None:
    # Counts for 2 folds x 2 labels: candidate 1 gains a lot of macro-F1 (its rare label)
    # but loses micro-F1 against 0.5; candidate 2 gains less macro and keeps micro.
    hits = np.array([[5, 50], [5, 50]], dtype=np.float64)
    half = (np.array([[0, 40], [0, 40]]), np.array([[0, 45], [0, 45]]))
    greedy = (np.array([[5, 20], [5, 20]]), np.array([[6, 22], [6, 22]]))
    modest = (np.array([[1, 41], [1, 41]]), np.array([[1, 46], [1, 46]]))
    tp = np.stack([half[0], greedy[0], modest[0]]).astype(np.float64)
    pp = np.stack([half[1], greedy[1], modest[1]]).astype(np.float64)
    allowed = module._micro_at_least_half(hits, tp, pp)
    np.testing.assert_array_equal(allowed, [True, False, True])
    scores, _ = module._lower_bounds(hits, tp, pp)
    assert scores[1] > scores[2] > scores[0]  # the weighted gain alone would keep the greedy one


@pytest.mark.parametrize(
    ("score_dtype", "subset"),
    [(torch.float32, True), (torch.float64, False), (torch.bfloat16, True), (torch.float16, False)],
)
def test_out_of_fold_counts_match_a_brute_force_count(monkeypatch, score_dtype, subset) -> None:
    # Counted in one more read of the rows (a random subset's, when given), in many small
    # chunks on the worker threads: the same counts as comparing every row with its fold's
    # cut, in the scores' own precision, cuts that fall between two scores included.
    monkeypatch.setattr(module, "_CUT_ELEMENTS", 7 * 4 * 9)  # 9 rows per chunk
    rng = np.random.default_rng(31)
    n, n_labels, n_folds = 2000, 4, 5
    scores = torch.from_numpy(rng.random((n, n_labels))).to(score_dtype)
    targets = torch.from_numpy(rng.random((n, n_labels)) < 0.3)
    rows = np.sort(rng.choice(n, 700, replace=False)) if subset else None
    folds = rng.integers(0, n_folds, n if rows is None else len(rows))
    calibration = module._Calibration(scores, targets, folds, n_folds, rows)
    values = scores.to(torch.float64).numpy()
    picked = values if rows is None else values[rows]
    candidates = rng.uniform(0.05, 0.95, (7, n_folds, n_labels))
    candidates[1] = picked[rng.integers(0, len(picked), (n_folds, n_labels)), 0]  # on a score
    tp, pp = module._out_of_fold_counts(calibration, candidates)
    truth = targets.numpy() if rows is None else targets.numpy()[rows]
    for c in range(len(candidates)):
        for fold in range(n_folds):
            inside = folds == fold
            above = picked[inside] >= candidates[c, fold]
            np.testing.assert_array_equal(pp[c, fold], above.sum(0))
            np.testing.assert_array_equal(tp[c, fold], (above & truth[inside]).sum(0))
    np.testing.assert_array_equal(
        module._fold_positives(calibration),
        [truth[folds == fold].sum(0) for fold in range(n_folds)],
    )
