"""tuning._products.count_product: exact products of counts on torch's BLAS."""

from __future__ import annotations

import numpy as np
import pytest

from labelcut.tuning._products import count_product


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_numpy_exactly_on_whole_numbers(dtype) -> None:
    rng = np.random.default_rng(3)
    flags = (rng.random((5_000, 40)) < 0.3).astype(dtype)
    assert np.array_equal(count_product(flags.T, flags), flags.T @ flags)
    weights = rng.poisson(1.0, (200, 300)).astype(dtype)
    counts = rng.integers(0, 5_000, (300, 9)).astype(dtype)
    got = count_product(weights, counts)
    assert got.dtype == dtype and got.shape == (200, 9)
    assert np.array_equal(got, weights @ counts)


def test_reads_views_torch_cannot_share() -> None:
    rng = np.random.default_rng(4)
    left = rng.integers(0, 3, (6, 5)).astype(np.float64)
    right = rng.integers(0, 3, (5, 4)).astype(np.float64)
    frozen = right.copy()
    frozen.flags.writeable = False
    flipped = right[::-1]
    assert np.array_equal(count_product(left, frozen), left @ right)
    assert np.array_equal(count_product(left, flipped), left @ flipped)
    assert np.array_equal(count_product(left[:, ::-1], right), left[:, ::-1] @ right)


def test_right_operand_takes_the_left_dtype() -> None:
    left = np.ones((2, 3), dtype=np.float32)
    right = np.arange(6, dtype=np.int64).reshape(3, 2)
    got = count_product(left, right)
    assert got.dtype == np.float32
    assert np.array_equal(got, np.array([[6.0, 9.0], [6.0, 9.0]], dtype=np.float32))
