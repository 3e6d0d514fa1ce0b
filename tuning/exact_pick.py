"""Pick the best of a label's cuts exactly, quickly: screen in float64, settle in fractions.

The objectives of :mod:`tuning.costs` and :mod:`tuning.micro` are sums of
products of user numbers (costs, beta², a ratio) with exact integer counts.
float64 rounds those products, so two cuts that are equally good as real
numbers can compare unequal, and the tie rule (the higher threshold wins) would
then depend on rounding. So: compute the objective in float64 for every cut,
keep the cuts within a rounding bound of the best, and compare only those as
exact :class:`fractions.Fraction` values. The answer is the exact optimum,
ties to the highest cut index.

User numbers are read as the decimals they were written as
(:func:`decimal_fraction`: ``0.1`` is 1/10, not the binary float nearest to
it), so ``cost_fp = 0.3`` for one false positive ties exactly with
``cost_fn = 0.1`` for three misses, as the user means it (float64 says
``0.1 * 3 > 0.3``).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

# A float64 sum of a few rounded products is within this many ulps of the exact value.
_ULPS = 16.0


def decimal_fraction(value: float) -> Fraction:
    """``value`` as the exact fraction of its shortest decimal form (``repr``)."""
    return Fraction(repr(float(value)))


def best_cut(
    approx: np.ndarray, magnitude: float, exact: Callable[[int], Fraction], *, maximise: bool
) -> int:
    """Index of the exact best cut, ties to the highest index.

    ``approx`` (m,) float64: the objective of each cut in float64; ``magnitude``:
    a bound on the absolute value of every term summed into it (the rounding
    error is below ``_ULPS * eps * magnitude``); ``exact(i)``: the exact
    objective of cut ``i``.
    """
    tolerance = _ULPS * np.finfo(np.float64).eps * max(magnitude, 1.0)
    if maximise:
        near = np.flatnonzero(approx >= approx.max() - 2.0 * tolerance)
    else:
        near = np.flatnonzero(approx <= approx.min() + 2.0 * tolerance)
    if len(near) == 1:
        return int(near[0])
    best_index, best_value = -1, None
    for index in near.tolist():  # increasing, so ">=" hands ties to the higher cut
        value = exact(index)
        if best_value is None or (value >= best_value if maximise else value <= best_value):
            best_index, best_value = index, value
    return best_index
