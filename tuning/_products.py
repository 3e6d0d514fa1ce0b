"""Matrix products of counts, on torch's BLAS rather than numpy's.

numpy's OpenBLAS keeps a worker thread spinning for about 0.1 s after every
product (measured here: 0.10 CPU-s while the caller sleeps 0.2 s; torch's MKL
with OpenMP: 0.01 s). A tune calls a few small products beside its sorted pass,
so on a 2-core machine each one took most of a core from the sorts for that
long: the bare path's CPU time varied from 1.3 to 2.0 s between identical
calls, and fell to 1.2-1.4 s once the products moved here.

The operands are counts (0/1 flags, Poisson weights, integer tallies), so every
product and sum is an integer below 2**24 (float32) or 2**53 (float64) and the
result is exact whatever the summation order: the same on any BLAS or thread count.
"""

from __future__ import annotations

import numpy as np
import torch


def count_product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right`` for 2-D float32 or float64 arrays of whole numbers (see above);
    ``right`` is cast to ``left``'s dtype. Transposed views are read as they are."""
    product = _tensor(left) @ _tensor(np.asarray(right, dtype=left.dtype))
    return product.numpy()


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A torch view of ``array`` (a copy when torch cannot view it: read-only arrays,
    negative strides)."""
    if not array.flags.writeable or any(stride < 0 for stride in array.strides):
        array = np.array(array)
    return torch.from_numpy(array)
