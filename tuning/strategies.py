"""How per-label and shared thresholds combine: the ``strategy`` of ``tune_thresholds``.

- ``"per_label"``: each label's own optimum (its status says when the fallback
  is used instead).
- ``"global"``: one threshold for every label, the exact optimum of the pooled
  (micro) objective (see :mod:`tuning.pooled`).
- ``"shrunk"`` (the default): each label's own optimum pulled toward the shared
  one in logit space, with weight ``w = s / (s + k)`` on a label's own
  threshold, ``s`` its validation positives and ``k =``
  :data:`SHRINKAGE_POSITIVES`::

      threshold = sigmoid(w * logit(own) + (1 - w) * logit(shared))

  A label with many positives keeps (nearly) its own threshold; a label with
  ``k`` positives sits halfway (in logit space); a label that could not be
  tuned (no positives in the validation data, too few, no negatives, target
  unreachable) gets the shared threshold, which is better evidence about it
  than the arbitrary 0.5. Logit space because the thresholds of rare labels
  sit near 0, where a plain average would be dominated by the larger value.

Each label also records where its threshold came from: "per_label",
"shrunk", "global" or "fallback".
"""

from __future__ import annotations

import numpy as np

STRATEGIES: tuple[str, ...] = ("shrunk", "per_label", "global")
DEFAULT_STRATEGY = "shrunk"
#: Positives at which a label's own threshold and the shared one weigh the same.
SHRINKAGE_POSITIVES = 6.0
# Thresholds are clipped this far inside (0, 1) before taking logits.
_LOGIT_EPS = 1e-9


def logit(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, _LOGIT_EPS, 1.0 - _LOGIT_EPS)
    return np.log(clipped) - np.log1p(-clipped)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


def shrinkage_weight(support: np.ndarray, k: float) -> np.ndarray:
    """``s / (s + k)``: the weight of a label's own threshold (1 when k is 0)."""
    support = np.asarray(support, dtype=np.float64)
    if k == 0:
        return np.ones_like(support)
    return support / (support + k)


def blend(own: np.ndarray, shared: float, weight: np.ndarray) -> np.ndarray:
    """``sigmoid(w * logit(own) + (1 - w) * logit(shared))``, exact at w = 0 and w = 1."""
    mixed = sigmoid(weight * logit(own) + (1.0 - weight) * logit(np.float64(shared)))
    return np.where(weight >= 1.0, own, np.where(weight <= 0.0, shared, mixed))


def combine(
    strategy: str,
    own: np.ndarray,
    ok: np.ndarray,
    support: np.ndarray,
    shared: float | None,
    fallback: float,
    k: float,
    statuses: list[str] | None = None,
    constrained: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Final thresholds (L,) and each label's source for ``strategy``.

    ``own``: per-label thresholds (used where ``ok``); ``shared``: the pooled
    threshold, None when it could not be tuned (then every strategy falls back
    to per-label thresholds where ok and ``fallback`` elsewhere). With a
    ``constrained`` objective (a precision or recall target is a promise per
    label), "shrunk" keeps every tuned label's own threshold and gives the
    shared one only to labels without enough positives; "target_unreachable"
    labels keep ``fallback``.
    """
    own = np.asarray(own, dtype=np.float64)
    if strategy == "per_label" or shared is None:
        sources = ["per_label" if good else "fallback" for good in ok.tolist()]
        return np.where(ok, own, fallback), sources
    if strategy == "global":
        return np.full_like(own, shared), ["global"] * len(own)
    weight = np.where(ok, 1.0 if constrained else shrinkage_weight(support, k), 0.0)
    if constrained and statuses is not None:
        unreachable = np.array([status == "target_unreachable" for status in statuses], dtype=bool)
        thresholds = np.where(ok, own, np.where(unreachable, fallback, shared))
        sources = [
            "per_label" if good else "fallback" if bad else "global"
            for good, bad in zip(ok.tolist(), unreachable.tolist(), strict=True)
        ]
        return thresholds, sources
    sources = [
        "per_label" if w >= 1.0 else "global" if w <= 0.0 else "shrunk" for w in weight.tolist()
    ]
    return blend(np.where(ok, own, shared), shared, weight), sources
