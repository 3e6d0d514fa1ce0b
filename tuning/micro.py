"""``objective="micro_f1"`` / ``"micro_fbeta"``: per-label thresholds that jointly maximise
micro F-beta, exactly and globally.

Micro F-beta pools every (row, label) decision: with a cut ``c_j`` per label,
``TP = sum_j TP_j(c_j)``, ``PP = sum_j PP_j(c_j)`` and ``P = sum_j P_j``::

    F(c) = (1 + b²) TP / (PP + b² P)

``PP + b² P > 0`` whenever there is a positive, so ``F(c) >= lam`` iff::

    sum_j [(1 + b²) TP_j(c_j) - lam PP_j(c_j)]  >=  lam b² P

(for F1: ``sum_j (2 TP_j - lam PP_j) >= lam P``). The left side separates by
label, so ``h(lam) = max_c sum_j [...] - lam b² P`` is one exact pass over
each label's cuts. Dinkelbach's iteration: start from a configuration ``c⁰``
(every label at the ``global`` strategy's pooled optimum, one shared
threshold), set ``lam = F(cᵏ)``, let ``cᵏ⁺¹`` maximise every label's term at
that ``lam``; then ``F(cᵏ⁺¹) >= lam`` (``cᵏ`` itself scores 0), and when it
does not increase, ``h(lam) = 0``, i.e. no configuration beats ``lam``: the
global optimum. Each step strictly increases ``F`` over a finite set, so it
stops; in practice after 2-5 steps, each ``O(cuts)``.

Ties: at the optimum ``lam*`` the optimal configurations are exactly the
products of every label's maximisers of its own term, so taking each label's
highest maximiser (as the last step does) gives the optimal configuration
with every threshold as high as possible, the project's tie rule.

A label's cuts include "predict nothing" (cut ``m``, see
:mod:`tuning.cutpoints`): a rare label whose every cut adds more false than
true positives at ``lam`` drops out of micro F-beta, which is what maximises it.
Every label is tuned, including those without positives in the validation data
(they predict nothing); there is no per-label fallback.

Memory and time: one pass sorts each label once (one label's cuts in memory at
a time) and keeps only the cuts that can win a step for some ``lam`` in (0, 1]
(local maxima: see :func:`_candidates`; at most the label's positives + 2), so
each step costs O(kept cuts) and memory follows the positives, not the rows.

Exactness: ``lam`` is an exact fraction and each label's maximiser is settled
in exact arithmetic (:mod:`tuning.exact_pick`), ``b²`` being the square of
``beta`` read as the decimal it was written as.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from labelcut.tuning.cutpoints import (
    LabelCuts,
    all_cut_thresholds,
    as_float_array,
    as_target_array,
    iter_label_cuts,
)
from labelcut.tuning.exact_pick import best_cut, decimal_fraction

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class MicroResult:
    """Per-label thresholds maximising micro F-beta together.

    ``thresholds`` float64 (L,); per label (L,) int64 ``true_positives``,
    ``predicted_positives``, ``support`` and bool ``predicts_nothing`` at them.
    ``micro_fbeta``, ``micro_precision``, ``micro_recall``, ``micro_f1``: pooled
    at ``thresholds``; ``start_threshold``/``start_micro_fbeta``: the shared
    threshold Dinkelbach started from and its micro F-beta (None if none);
    ``default_micro_fbeta``: at 0.5; ``iterations``: exact passes over the
    cuts; ``trace``: micro F-beta after each pass; ``status``: "ok" or
    "no_positives" (no positive anywhere: every label gets ``fallback``).
    """

    thresholds: np.ndarray
    beta: float
    status: str
    true_positives: np.ndarray
    predicted_positives: np.ndarray
    support: np.ndarray
    predicts_nothing: np.ndarray
    micro_fbeta: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    default_micro_fbeta: float
    start_threshold: float | None
    start_micro_fbeta: float | None
    iterations: int
    trace: list[float] = field(default_factory=list)
    n_samples: int = 0

    def to_dict(self, label_names: Sequence[str] | None = None) -> dict[str, Any]:
        names = list(label_names) if label_names else [str(j) for j in range(len(self.support))]
        return {
            "objective": "micro_f1" if self.beta == 1.0 else "micro_fbeta",
            "params": {"beta": self.beta},
            "status": self.status,
            "n_samples": self.n_samples,
            "thresholds": {names[j]: float(t) for j, t in enumerate(self.thresholds)},
            "per_label": [
                {
                    "label": names[j],
                    "threshold": float(self.thresholds[j]),
                    "true_positives": int(self.true_positives[j]),
                    "predicted_positives": int(self.predicted_positives[j]),
                    "support": int(self.support[j]),
                    "predicts_nothing": bool(self.predicts_nothing[j]),
                }
                for j in range(len(names))
            ],
            "summary": {
                "micro_fbeta": {
                    "tuned": self.micro_fbeta,
                    "start": self.start_micro_fbeta,
                    "default": self.default_micro_fbeta,
                },
                "micro_precision": self.micro_precision,
                "micro_recall": self.micro_recall,
                "micro_f1": self.micro_f1,
                "start_threshold": self.start_threshold,
                "iterations": self.iterations,
                "trace": list(self.trace),
            },
        }


def _fbeta(tp: int, pp: int, positives: int, beta2: Fraction) -> Fraction:
    """Exact micro F-beta of pooled counts (0 when nothing is right)."""
    if tp == 0:
        return Fraction(0)
    return (1 + beta2) * tp / (pp + beta2 * positives)


@dataclass(frozen=True)
class _Candidates:
    """The cuts of one label that can win a Dinkelbach step, in increasing threshold order.

    (k,) int64 ``true_positives``/``predicted_positives``, float64 ``thresholds``.
    """

    true_positives: np.ndarray
    predicted_positives: np.ndarray
    thresholds: np.ndarray


def _candidates(cuts: LabelCuts, gain: float, score_dtype: np.dtype) -> _Candidates:
    """The cuts that can maximise ``gain * TP - lam * PP`` for some ``lam`` in (0, 1].

    Every maximiser is a local one: going from cut ``i`` up to ``i + 1`` drops
    group ``i`` (the rows at the i-th distinct score: ``pos_i`` positives of
    ``cnt_i``), which must not help, ``gain * pos_i >= lam * cnt_i``; going down
    to ``i - 1`` adds group ``i - 1``, which must not help either,
    ``gain * pos_(i-1) <= lam * cnt_(i-1)``. With ``lam > 0`` the first needs
    ``pos_i > 0``; together they need ``pos_(i-1) / cnt_(i-1) <= pos_i / cnt_i``,
    and ``lam <= 1`` (micro F-beta never exceeds 1) needs
    ``gain * pos_(i-1) <= cnt_(i-1)``. Only cuts meeting all three (and the end
    cuts: everything, nothing) are kept: at most ``positives + 2`` per label, so
    memory follows the positives, not the rows. Ties survive (the conditions are
    weak), so the highest maximiser is kept too.
    """
    tp, pp = cuts.true_positives, cuts.predicted_positives
    group_pos, group_cnt = tp[:-1] - tp[1:], pp[:-1] - pp[1:]  # (m,) per distinct score
    keep = np.ones(len(tp), dtype=bool)
    pos, cnt = group_pos[1:], group_cnt[1:]  # group i, for cuts i = 1 .. m-1
    prev_pos, prev_cnt = group_pos[:-1], group_cnt[:-1]  # group i - 1
    keep[1:-1] = (
        (pos > 0)
        & (prev_pos * cnt <= pos * prev_cnt)  # exact: products of counts fit int64
        & (gain * prev_pos <= prev_cnt * (1.0 + 1e-9))  # a margin only keeps more cuts
    )
    thresholds = all_cut_thresholds(cuts, score_dtype)
    return _Candidates(tp[keep], pp[keep], thresholds[keep])


def _best_cuts(
    candidates: list[_Candidates], gain: Fraction, lam: Fraction, n_samples: int
) -> list[int]:
    """Each label's highest candidate maximising ``gain * TP - lam * PP`` exactly."""
    gain_f, lam_f = float(gain), float(lam)
    chosen = []
    for label in candidates:
        tp, pp = label.true_positives, label.predicted_positives
        chosen.append(
            best_cut(
                gain_f * tp - lam_f * pp,
                (gain_f + lam_f) * n_samples,
                lambda i, tp=tp, pp=pp: gain * int(tp[i]) - lam * int(pp[i]),
                maximise=True,
            )
        )
    return chosen


def _pooled(candidates: list[_Candidates], chosen: list[int]) -> tuple[int, int]:
    pairs = list(zip(candidates, chosen, strict=True))
    tp = sum(int(label.true_positives[i]) for label, i in pairs)
    pp = sum(int(label.predicted_positives[i]) for label, i in pairs)
    return tp, pp


def _global_start(scores: np.ndarray, targets: np.ndarray, beta: float) -> float | None:
    """The ``global`` strategy's shared threshold for micro F-beta (None if it has none)."""
    from labelcut.tuning import tune_thresholds  # late: tuning/__init__ may import this module

    result = tune_thresholds(
        scores,
        targets,
        "f1" if beta == 1.0 else "fbeta",
        beta=beta,
        strategy="global",
        n_bootstrap=0,
        estimate=False,
    )
    shared = getattr(result, "global_threshold", None)
    return None if shared is None else float(shared)


def tune_micro_fbeta(
    scores: Any,
    targets: Any,
    beta: float = 1.0,
    *,
    start_threshold: float | None = None,
    fallback: float = 0.5,
    max_iterations: int = 1000,
) -> MicroResult:
    """Per-label thresholds that maximise micro F-beta jointly (module docstring).

    ``scores`` (n, L) in [0, 1] (numpy or torch, any float dtype), ``targets``
    (n, L) 0/1, ``beta`` in (0, 1e6]. ``start_threshold``: the shared threshold
    to start from; None asks ``tune_thresholds(..., strategy="global")`` for
    its ``global_threshold`` (pass it when you already have it). The result
    never scores below the start. A label is predicted iff ``score >= threshold``.
    """
    score_array = as_float_array(scores)
    truth = as_target_array(targets, score_array.shape)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise ValueError("beta must be a number in (0, 1e6].")
    beta = float(beta)
    if not (math.isfinite(beta) and 0.0 < beta <= 1e6):
        raise ValueError("beta must be a number in (0, 1e6].")
    if not (math.isfinite(fallback) and 0.0 <= fallback <= 1.0):
        raise ValueError("fallback must be a number in [0, 1].")
    if start_threshold is not None and not (
        math.isfinite(start_threshold) and start_threshold >= 0.0
    ):
        raise ValueError("start_threshold must be a finite number >= 0.")

    beta2 = decimal_fraction(beta) ** 2
    gain = 1 + beta2
    n_samples, n_labels = score_array.shape
    if start_threshold is None:
        start_threshold = _global_start(score_array, truth, beta)
    # One pass, one label's cuts in memory at a time: counts at the start, at 0.5 and at
    # the fallback, and the candidates that can win a step.
    at = np.zeros((4, 3, n_labels), dtype=np.int64)  # (start, 0.5, fallback, all) x (tp, pp, P)
    candidates = []
    for j, cuts in enumerate(iter_label_cuts(score_array, truth)):
        for row, threshold in enumerate((start_threshold, DEFAULT_THRESHOLD, fallback, 0.0)):
            index = cuts.nothing if threshold is None else cuts.cut_at(threshold)
            at[row, :, j] = (
                cuts.true_positives[index],
                cuts.predicted_positives[index],
                cuts.positives,
            )
        candidates.append(_candidates(cuts, float(gain), score_array.dtype))
    support = at[0, 2]
    positives = int(support.sum())

    def fbeta_at(tp: np.ndarray, pp: np.ndarray) -> Fraction:
        return _fbeta(int(tp.sum()), int(pp.sum()), positives, beta2)

    if positives == 0:
        tp, pp = at[2, 0], at[2, 1]
        return MicroResult(
            thresholds=np.full(n_labels, fallback),
            beta=beta,
            status="no_positives",
            true_positives=tp,
            predicted_positives=pp,
            support=support,
            predicts_nothing=pp == 0,
            micro_fbeta=0.0,
            micro_precision=1.0 if pp.sum() == 0 else 0.0,
            micro_recall=0.0,
            micro_f1=0.0,
            default_micro_fbeta=0.0,
            start_threshold=None,
            start_micro_fbeta=None,
            iterations=0,
            n_samples=n_samples,
        )

    start_value = None if start_threshold is None else fbeta_at(at[0, 0], at[0, 1])
    # Dinkelbach needs lam > 0 for the candidates above: without a start that gets any
    # positive right, start from predicting everything (F > 0 when there is a positive).
    lam = start_value if start_value else fbeta_at(at[3, 0], at[3, 1])
    trace: list[float] = []
    iterations = 0
    chosen: list[int] = []
    while iterations < max_iterations:
        iterations += 1
        candidate = _best_cuts(candidates, gain, lam, n_samples)
        value = _fbeta(*_pooled(candidates, candidate), positives, beta2)
        trace.append(float(value))
        # The previous configuration scores exactly 0 at lam, so the maximiser cannot be worse.
        assert value >= lam, "Dinkelbach step decreased micro F-beta"
        chosen = candidate
        if value == lam:
            break
        lam = value
    tp, pp = _pooled(candidates, chosen)
    pairs = list(zip(candidates, chosen, strict=True))
    return MicroResult(
        thresholds=np.array([label.thresholds[i] for label, i in pairs]),
        beta=beta,
        status="ok",
        true_positives=np.array([label.true_positives[i] for label, i in pairs]),
        predicted_positives=np.array([label.predicted_positives[i] for label, i in pairs]),
        support=support,
        predicts_nothing=np.array([i == len(label.thresholds) - 1 for label, i in pairs]),
        micro_fbeta=float(_fbeta(tp, pp, positives, beta2)),
        micro_precision=1.0 if pp == 0 else tp / pp,
        micro_recall=tp / positives,
        micro_f1=float(_fbeta(tp, pp, positives, Fraction(1))),
        default_micro_fbeta=float(fbeta_at(at[1, 0], at[1, 1])),
        start_threshold=start_threshold,
        start_micro_fbeta=None if start_value is None else float(start_value),
        iterations=iterations,
        trace=trace,
        n_samples=n_samples,
    )
