"""Searching a label's counted groups with the rules of ``tune_thresholds``.

A label's statistics are groups of scores in increasing order (one per
distinct score, one per grid bin, or a mix: :mod:`tuning.stats`). The cut at
group ``g`` predicts positive iff ``score >= low[g]``; its counts (the suffix
sums of the groups' positives and rows) are exact whatever the groups are.
:class:`GroupCandidates` presents them with the interface the in-memory search
code reads from :class:`tuning._sorted.Candidates` (``m``, ``*_at``,
``counts_at``, ``values``, ...), so the bootstrap (:mod:`tuning.bootstrap`) and
the compact curves (:mod:`tuning.curves`) run on counts unchanged.

:func:`choose` picks a cut with :mod:`tuning._search`'s objective values, tie
rule ("the last maximum wins": the higher threshold), status ladder and
midpoint rounding; with one group per distinct score it is exactly
``tune_thresholds``' choice. :func:`expandable` bounds the objective inside each
group of a grid and says which groups could still hold the optimum.
"""

from __future__ import annotations

import numpy as np
import torch

from labelcut.tuning._checks import TuningSpec
from labelcut.tuning._search import label_statuses, last_maximum, midpoint_thresholds
from labelcut.tuning._search import objective_values as _objective_values

# Relative slack on the bound test: keeping a few more groups never changes the answer,
# and it covers float64 rounding along the bound's diagonal (F-beta rounds twice).
_BOUND_SLACK = 1e-12


def objective_values(tp, pp, positives, spec: TuningSpec):
    """:func:`tuning._search.objective_values` (the one definition of each objective)."""
    return _objective_values(tp, pp, positives, spec)


class GroupCandidates:
    """One label's groups as candidates (increasing score order).

    ``low``/``high`` (m,) float64: each group's lowest and highest score;
    ``group_positives``/``group_negatives`` (m,) int64. Candidate ``g`` is
    "predict positive iff ``score >= low[g]``".
    """

    def __init__(
        self,
        low: np.ndarray,
        high: np.ndarray,
        group_positives: np.ndarray,
        group_negatives: np.ndarray,
    ) -> None:
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.group_positives = np.asarray(group_positives, dtype=np.int64)
        self.group_negatives = np.asarray(group_negatives, dtype=np.int64)
        rows = self.group_positives + self.group_negatives
        # tp_at[g] / pp_at[g]: counts of score >= low[g]; index m (nothing) gives 0.
        self.tp_at = np.append(np.cumsum(self.group_positives[::-1])[::-1], 0).astype(np.int64)
        self.pp_at = np.append(np.cumsum(rows[::-1])[::-1], 0).astype(np.int64)
        self.n_samples = int(self.pp_at[0])
        self.positives = int(self.tp_at[0])

    @property
    def m(self) -> int:
        return len(self.low)

    def index_at(self, threshold: float) -> int:
        """Index of the first group whose lowest score is >= ``threshold`` (m if none)."""
        return int(np.searchsorted(self.low, float(threshold), side="left"))

    def straddles(self, threshold: float) -> bool:
        """Whether some group has scores on both sides of ``threshold`` (its counts at
        ``threshold`` are then not known from the groups)."""
        g = self.index_at(threshold) - 1
        return g >= 0 and self.high[g] >= threshold

    def true_positives_at(self, index: np.ndarray) -> np.ndarray:
        return self.tp_at[np.asarray(index)].astype(np.float64)

    def predicted_positives_at(self, index: np.ndarray) -> np.ndarray:
        return self.pp_at[np.asarray(index)].astype(np.float64)

    def values_at(self, index: np.ndarray) -> np.ndarray:
        return self.low[np.asarray(index)]

    def counts_at(self, threshold: float) -> tuple[int, int]:
        """(true positives, predicted positives) of ``score >= threshold`` (exact unless
        :meth:`straddles`; then those of the next group's lowest score)."""
        g = self.index_at(threshold)
        return int(self.tp_at[g]), int(self.pp_at[g])

    @property
    def true_positives(self) -> np.ndarray:
        return self.tp_at[:-1].astype(np.float64)

    @property
    def predicted_positives(self) -> np.ndarray:
        return self.pp_at[:-1].astype(np.float64)

    @property
    def values(self) -> np.ndarray:
        return self.low

    def value(self, group: int) -> float:
        return float(self.low[group])


def choose(
    candidates: GroupCandidates, spec: TuningSpec, score_dtype: torch.dtype
) -> tuple[float, str, int | None]:
    """(threshold, status, chosen group or None) with ``tune_thresholds``' rules.

    The threshold is the midpoint between the chosen group's lowest score and
    the previous group's highest score (0 below the first), rounded to
    ``score_dtype``; the fallback unless the status is "ok".
    """
    positives, n_samples = candidates.positives, candidates.n_samples
    best, reachable = None, False
    if 0 < positives < n_samples:
        values, feasible = objective_values(
            candidates.true_positives, candidates.predicted_positives, float(positives), spec
        )
        index, reachable = last_maximum(values, feasible)
        best = int(index)
    [status] = label_statuses(n_samples, np.array([positives]), np.array([bool(reachable)]), spec)
    if status != "ok" or best is None:
        return spec.fallback, status, None
    lower = candidates.high[best - 1] if best > 0 else 0.0
    [threshold] = midpoint_thresholds(
        candidates.low[best : best + 1], np.array([lower]), np.array([best > 0]), score_dtype
    )
    return float(threshold), status, best


def expandable(candidates: GroupCandidates, spec: TuningSpec) -> np.ndarray:
    """(m,) bool: the groups inside which a cut could still be the optimum (or tie it).

    A cut inside group ``g`` includes ``k <= pos[g]`` of its positives and at
    least ``max(k, 1)`` of its rows on top of the counts above it; F1, F-beta
    and precision grow with ``k`` along that line and recall is at most
    ``(above + pos[g]) / P``, so the objective there is bounded by its value at
    ``k = pos[g]`` (feasibility likewise). Every group's lowest score is itself a
    cut with exact counts; groups whose bound falls below the best such cut
    cannot hold the optimum. Groups of one score (``low == high``) need no
    expanding. Labels the status ladder rejects need none either.
    """
    positives, n_samples = candidates.positives, candidates.n_samples
    m = candidates.m
    [status] = label_statuses(n_samples, np.array([positives]), np.array([True]), spec)
    if status != "ok" or m == 0:
        return np.zeros(m, dtype=bool)
    tp_at, pp_at = candidates.tp_at.astype(np.float64), candidates.pp_at.astype(np.float64)
    edge, edge_feasible = objective_values(tp_at[:-1], pp_at[:-1], float(positives), spec)
    usable = np.ones(m, bool) if edge_feasible is None else edge_feasible
    lower = float(edge[usable].max()) if usable.any() else -np.inf
    above_tp, above_pp = tp_at[1:], pp_at[1:]
    tp = above_tp + candidates.group_positives
    pp = np.maximum(above_pp + candidates.group_positives, above_pp + 1.0)
    if spec.objective in ("f1", "fbeta"):
        bound, _ = objective_values(tp, pp, float(positives), spec)
    else:
        precision, recall = tp / pp, tp / float(positives)
        if spec.objective == "recall_at_precision":
            bound = np.where(precision >= spec.target, recall, -np.inf)
        else:
            bound = np.where(recall >= spec.target, precision, -np.inf)
    keep = (bound > -np.inf) & (bound >= lower - _BOUND_SLACK * abs(lower))
    return keep & (candidates.low < candidates.high)
