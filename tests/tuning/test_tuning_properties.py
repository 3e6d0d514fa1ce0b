"""Hypothesis properties of tune_thresholds and apply_thresholds."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labelcut.tuning import apply_thresholds
from labelcut.tuning import tune_thresholds as _tune_thresholds

# These tests pin the per-label search itself: the default strategy pulls rare labels
# toward a shared threshold, and the bootstrap is tested in test_tuning_decision_quality.
tune_thresholds = functools.partial(_tune_thresholds, strategy="per_label", n_bootstrap=0)

# A small pool of values makes ties and saturated scores common.
SCORE_VALUES = [0.0, 1e-7, 0.1, 0.25, 0.3, 0.5, 0.5000001, 0.7, 0.99, 1.0]


@st.composite
def problems(draw):
    n = draw(st.integers(1, 25))
    n_labels = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    pool = st.one_of(st.sampled_from(SCORE_VALUES), st.floats(0.0, 1.0))
    scores = draw(hnp.arrays(np.float64, (n, n_labels), elements=pool)).astype(dtype)
    targets = draw(hnp.arrays(np.int8, (n, n_labels), elements=st.integers(0, 1)))
    return scores, targets


OBJECTIVE_ARGS = st.one_of(
    st.just(("f1", {})),
    st.tuples(st.just("fbeta"), st.fixed_dictionaries({"beta": st.sampled_from([0.5, 1.0, 3.0])})),
    st.tuples(
        st.sampled_from(["recall_at_precision", "precision_at_recall"]),
        st.fixed_dictionaries({"target": st.sampled_from([0.1, 0.5, 0.75, 1.0])}),
    ),
)


@settings(max_examples=150, deadline=None)
@given(problem=problems(), objective_args=OBJECTIVE_ARGS)
def test_thresholds_reproduce_reported_metrics(problem, objective_args):
    scores, targets = problem
    objective, params = objective_args
    with np.errstate(all="raise"):
        result = tune_thresholds(scores, targets, objective, device="cpu", **params)
    assert np.all((result.thresholds >= 0) & (result.thresholds <= 1))
    predicted = apply_thresholds(scores, result.thresholds)
    for j in range(scores.shape[1]):
        chosen, truth = predicted[:, j], targets[:, j] == 1
        tp, pp, positives = int((chosen & truth).sum()), int(chosen.sum()), int(truth.sum())
        assert result.predicted_positives[j] == pp and result.support[j] == positives
        assert result.precision[j] == (tp / pp if pp else 1.0)
        assert result.recall[j] == (tp / positives if positives else 0.0)
        at_default = scores[:, j].astype(np.float64) >= 0.5
        assert result.default_predicted_positives[j] == int(at_default.sum())
        if result.status[j] == "ok" and objective == "recall_at_precision":
            assert result.precision[j] >= params["target"]
        if result.status[j] == "ok" and objective == "precision_at_recall":
            assert result.recall[j] >= params["target"]


@settings(max_examples=150, deadline=None)
@given(problem=problems())
def test_tuned_f1_is_at_least_default_f1(problem):
    scores, targets = problem
    result = tune_thresholds(scores, targets, device="cpu")
    for j, status in enumerate(result.status):
        if status == "ok":
            assert result.f1[j] >= result.default_f1[j]
            assert result.fbeta[j] == result.f1[j]  # beta 1


@settings(max_examples=100, deadline=None)
@given(problem=problems(), beta=st.sampled_from([0.25, 0.5, 2.0, 4.0]))
def test_tuned_fbeta_is_at_least_default_fbeta(problem, beta):
    scores, targets = problem
    result = tune_thresholds(scores, targets, "fbeta", beta=beta, device="cpu")
    for j, status in enumerate(result.status):
        if status == "ok":
            assert result.fbeta[j] >= result.default_fbeta[j]


@settings(max_examples=100, deadline=None)
@given(problem=problems(), target=st.sampled_from([0.2, 0.5, 0.9, 1.0]))
def test_recall_at_precision_beats_a_feasible_default(problem, target):
    scores, targets = problem
    result = tune_thresholds(scores, targets, "recall_at_precision", target=target, device="cpu")
    for j, status in enumerate(result.status):
        default_feasible = (
            result.default_predicted_positives[j] > 0 and result.default_precision[j] >= target
        )
        if status == "ok" and default_feasible:
            assert result.recall[j] >= result.default_recall[j]
        if status == "target_unreachable":
            assert not default_feasible


@settings(max_examples=100, deadline=None)
@given(problem=problems())
def test_label_order_does_not_matter(problem):
    scores, targets = problem
    order = np.arange(scores.shape[1])[::-1]
    forward = tune_thresholds(scores, targets, device="cpu")
    backward = tune_thresholds(scores[:, order], targets[:, order], device="cpu")
    assert np.array_equal(forward.thresholds[order], backward.thresholds)
    assert [forward.status[j] for j in order] == backward.status
