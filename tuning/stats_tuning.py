"""Tuning from merged statistics: the plan of passes, and the drivers (issue 17).

A tune over rows that never sit in one process (:mod:`tuning.stats`) is a
:class:`StatsTuning` plan: ask it for a :class:`StatsPass`, reduce every
chunk of rows to ``ScoreStats.from_arrays(scores, targets, pass_)``, merge
them (:func:`merge_stats`, any tree), feed the merged statistics back, and
repeat until :meth:`StatsTuning.next_pass` says ``None``; then
:meth:`StatsTuning.result` is the :class:`TuningResult`.

Modes (``plan_tuning(mode=...)``):

- ``"exact"``: thresholds, statuses, counts and ``global_threshold`` equal
  ``tune_thresholds`` on all rows. For f1/fbeta/recall_at_precision/
  precision_at_recall/cost (every strategy) it runs a grid pass and a few
  refining passes whose state is bounded by the grid and a budget, not by the
  rows (:mod:`tuning.stats_exact`); for the other objectives it is one
  ``"distinct"`` pass.
- ``"distinct"``: one pass of every label's counts at each distinct score
  (state grows with the distinct scores: about the rows for continuous scores).
  Intervals and curves then also equal ``tune_thresholds``'.
- ``"quantised"``: one ``"grid"`` pass, state O(labels x levels); cuts only at
  grid bin edges (:mod:`tuning.stats_grid`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from labelcut.tuning import stats_grid, stats_report
from labelcut.tuning._checks import TuningSpec
from labelcut.tuning.result import TuningResult
from labelcut.tuning.stats import ScoreStats, StatsPass
from labelcut.tuning.stats_result import CountedLabels, build_result, choose_all
from labelcut.tuning.stats_search import GroupCandidates

MODES = ("exact", "distinct", "quantised")
_CORE_OBJECTIVES = frozenset({"f1", "fbeta", "recall_at_precision", "precision_at_recall"})


def label_groups(stats: ScoreStats, j: int) -> GroupCandidates:
    """Label ``j``'s groups of ``stats`` as candidates."""
    part = stats.label(j)
    return GroupCandidates(
        stats.values(stats.low_bits[part]),
        stats.values(stats.high_bits[part]),
        stats.positives[part],
        stats.negatives[part],
    )


def pool_groups(
    low_bits: np.ndarray,
    high_bits: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray,
    pool_key: np.ndarray,
    score_dtype: str,
) -> tuple[GroupCandidates, np.ndarray]:
    """Every label's groups merged by ``pool_key`` (non-decreasing with the score).

    Returns the pooled candidates and each pooled group's lowest bit pattern.
    """
    keys, inverse = np.unique(pool_key, return_inverse=True)
    size = len(keys)
    low = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full(size, -1, dtype=np.int64)
    np.minimum.at(low, inverse, low_bits)
    np.maximum.at(high, inverse, high_bits)
    pos = np.bincount(inverse, weights=positives, minlength=size).astype(np.int64)
    neg = np.bincount(inverse, weights=negatives, minlength=size).astype(np.int64)
    values = stats_grid.bits_to_float
    return GroupCandidates(values(low, score_dtype), values(high, score_dtype), pos, neg), low


def counted_from_stats(
    stats: ScoreStats, spec: TuningSpec, labels: list[GroupCandidates] | None = None
) -> CountedLabels:
    """:class:`CountedLabels` of merged statistics (``labels``: groups built elsewhere)."""
    if stats.n_rows == 0:
        raise ValueError("cannot tune from statistics of 0 rows.")
    labels = labels or [label_groups(stats, j) for j in range(stats.n_labels)]
    pooled = pooled_bits = None
    if spec.strategy != "per_label":
        low, high, pos, neg = _flat_groups(labels, stats.score_dtype)
        pooled, pooled_bits = pool_groups(low, high, pos, neg, low, stats.score_dtype)
    support = np.array([label.positives for label in labels], dtype=np.int64)
    return CountedLabels(
        labels=labels,
        pooled=pooled,
        pooled_bits=pooled_bits,
        float_dtype=stats_grid.float_dtype_of(stats.score_dtype),
        score_dtype=stats_grid.TORCH_DTYPES[stats.score_dtype],
        n_rows=stats.n_rows,
        diagnosis=stats_report.diagnosis_from_counts(
            stats.n_rows, stats.rows_by_labels, support, stats.together
        ),
        estimate=stats_report.estimate_unavailable(stats.n_labels) if spec.estimate else None,
    )


def _flat_groups(labels: list[GroupCandidates], score_dtype: str):
    """All labels' groups as flat (low bits, high bits, positives, negatives) arrays."""
    low = np.concatenate([stats_grid.float_to_bits(g.low, score_dtype) for g in labels])
    high = np.concatenate([stats_grid.float_to_bits(g.high, score_dtype) for g in labels])
    pos = np.concatenate([g.group_positives for g in labels])
    neg = np.concatenate([g.group_negatives for g in labels])
    return low, high, pos, neg


def tune_from_stats(stats: ScoreStats, **tune_kwargs: Any) -> TuningResult:
    """Tune from merged ``"distinct"`` statistics of all rows (one pass), exactly.

    ``tune_kwargs``: ``tune_thresholds``' keyword arguments. The result equals
    ``tune_thresholds(scores, targets, **tune_kwargs)`` on the rows, but for the
    cross-fitted ``estimate`` (nulls with a reason: statistics keep no rows).
    """
    if stats.pass_.kind != "distinct":
        raise ValueError(
            f"tune_from_stats needs 'distinct' statistics, got '{stats.pass_.kind}'; "
            "use plan_tuning/tune_statistics for the other passes."
        )
    spec, return_curves, names = stats_report.check_tune_kwargs(stats.n_labels, **tune_kwargs)
    return _tune_distinct(stats, spec, return_curves, names)


def _tune_distinct(
    stats: ScoreStats, spec: TuningSpec, return_curves: bool, names: list[str] | None
) -> TuningResult:
    if spec.objective not in _CORE_OBJECTIVES or spec.abstain:
        from labelcut.tuning.stats_objectives import tune_objective_from_stats

        return tune_objective_from_stats(stats, spec, return_curves, names)
    counted = counted_from_stats(stats, spec)
    return build_result(counted, spec, choose_all(counted, spec), return_curves)


class StatsTuning:
    """A tune from statistics as a sequence of passes (module docstring).

    :attr:`passes_planned`: an upper bound on the passes, for progress bars.
    """

    def __init__(
        self, mode: str, levels: int, budget_rows: int | None = None, **tune_kwargs: Any
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
        self.mode, self.levels = mode, stats_grid.check_levels(levels)
        if budget_rows is not None and (
            isinstance(budget_rows, bool) or not isinstance(budget_rows, int) or budget_rows < 0
        ):
            raise ValueError(f"budget_rows must be None or an integer >= 0, got {budget_rows!r}.")
        self.budget_rows = budget_rows
        self.tune_kwargs = tune_kwargs
        # Checked now (labels unknown yet: names are checked again with the statistics).
        names = tune_kwargs.get("label_names")
        self.spec, self.return_curves, _ = stats_report.check_tune_kwargs(
            len(names) if names is not None and not isinstance(names, str) else 1,
            **{k: v for k, v in tune_kwargs.items() if k != "label_names"},
        )
        self._engine = _make_engine(self)
        self._result: TuningResult | None = None

    @property
    def passes_planned(self) -> int:
        """An upper bound on the passes (tightened once the grid pass shows the dtype)."""
        return int(self._engine.passes_planned)

    def next_pass(self) -> StatsPass | None:
        """The next pass to run over every row, or None when the tune is done."""
        return self._engine.next_pass()

    def feed(self, merged: ScoreStats) -> None:
        """The merged statistics of ALL rows for the pass :meth:`next_pass` returned."""
        expected = self._engine.next_pass()
        if expected is None:
            raise ValueError("this tune needs no more statistics: call result().")
        if not isinstance(merged, ScoreStats) or merged.pass_ != expected:
            got = merged.pass_ if isinstance(merged, ScoreStats) else type(merged).__name__
            raise ValueError(f"expected the statistics of {expected}, got those of {got}.")
        self._engine.feed(merged)

    def result(self) -> TuningResult:
        """The :class:`TuningResult`, once :meth:`next_pass` returned None."""
        if self._engine.next_pass() is not None:
            raise ValueError("the tune is not done: feed the statistics of every pass first.")
        if self._result is None:
            self._result = self._engine.result()
        return self._result


class _OnePass:
    """One pass ("distinct" or "grid"), then tune from it."""

    def __init__(self, plan: StatsTuning, kind: str) -> None:
        self.plan, self.pass_ = plan, StatsPass(kind, plan.levels, 1)
        self.stats: ScoreStats | None = None
        self.passes_planned = 1

    def next_pass(self) -> StatsPass | None:
        return self.pass_ if self.stats is None else None

    def feed(self, merged: ScoreStats) -> None:
        self.stats = merged

    def result(self) -> TuningResult:
        assert self.stats is not None
        spec, return_curves, names = stats_report.check_tune_kwargs(
            self.stats.n_labels, **self.plan.tune_kwargs
        )
        if self.pass_.kind == "distinct":
            return _tune_distinct(self.stats, spec, return_curves, names)
        from labelcut.tuning.stats_exact import tune_quantised

        return tune_quantised(self.stats, spec, return_curves)


def _make_engine(plan: StatsTuning):
    core = plan.spec.objective in _CORE_OBJECTIVES and not plan.spec.abstain
    if plan.mode == "quantised":
        if not core:
            raise ValueError(
                f"mode='quantised' supports objectives {', '.join(sorted(_CORE_OBJECTIVES))} "
                "(decision_rule='threshold'); use mode='exact'."
            )
        return _OnePass(plan, "grid")
    if plan.mode == "exact" and (core or plan.spec.objective == "cost"):
        from labelcut.tuning.stats_exact import ExactPasses

        return ExactPasses(plan)
    return _OnePass(plan, "distinct")


def plan_tuning(
    mode: str = "exact",
    levels: int = stats_grid.DEFAULT_LEVELS,
    *,
    budget_rows: int | None = None,
    **tune_kwargs: Any,
) -> StatsTuning:
    """A :class:`StatsTuning` plan; ``tune_kwargs`` as ``tune_thresholds``' (checked now).

    ``budget_rows`` (exact mode): a refining pass whose groups hold at most this many
    rows in all goes straight to their distinct scores (default
    :data:`tuning.stats_groups.STATE_BUDGET`, 2**20: about 40 MB of statistics); 0
    always refines through sub-bins (most passes, least state).
    """
    return StatsTuning(mode, levels, budget_rows, **tune_kwargs)


def tune_statistics(
    reduce: Callable[[StatsPass], ScoreStats],
    *,
    mode: str = "exact",
    levels: int = stats_grid.DEFAULT_LEVELS,
    budget_rows: int | None = None,
    **tune_kwargs: Any,
) -> TuningResult:
    """Run a whole plan: ``reduce(pass)`` must return the merged statistics of all rows."""
    plan = plan_tuning(mode, levels, budget_rows=budget_rows, **tune_kwargs)
    while (pass_ := plan.next_pass()) is not None:
        plan.feed(reduce(pass_))
    return plan.result()
