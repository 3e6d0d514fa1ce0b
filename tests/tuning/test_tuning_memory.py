"""A large tune hands the allocator's free memory back between its stages (tuning._memory)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from labelcut.tuning import _memory, tune_thresholds

needs_glibc = pytest.mark.skipif(not _memory.can_release(), reason="glibc's malloc_trim")

# In a fresh process whose allocator is set so that free() gives nothing back by itself:
# arrays below 64 MiB come from the heap, and the heap's top is never trimmed on free
# (glibc's defaults move with what was freed before, and a CI run saw them return the
# arrays at free already). malloc_trim(0) then hands back the free pages inside the heap.
_FRAGMENTED = """
import ctypes
import numpy as np
from pathlib import Path
from labelcut.tuning import _memory

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
libc = ctypes.CDLL(None)
assert libc.mallopt(M_MMAP_THRESHOLD, 64 << 20) == 1
assert libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1

def rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

arrays = [np.ones((1 << 20) // 8) for _ in range(200)]
pin = np.ones((1 << 20) // 8)
del arrays
before = rss_mib()  # still holds them
_memory.release_free_memory()
print(before - rss_mib())
"""


@needs_glibc
def test_release_hands_freed_heap_memory_back():
    done = subprocess.run(
        [sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True, check=True
    )
    released_mib = float(done.stdout.strip())
    assert released_mib > 150, released_mib  # of the 200 MiB freed


def _data(n: int, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    targets = (rng.random((n, n_labels)) < 0.2).astype(np.uint8)
    scores = np.clip(0.3 * targets + rng.random((n, n_labels)) * 0.7, 0, 1).astype(np.float32)
    return scores, targets


@pytest.mark.parametrize("strategy", ["adaptive", "shrunk", "per_label"])
def test_a_large_tune_releases_between_its_stages_and_a_small_one_does_not(monkeypatch, strategy):
    calls = []
    monkeypatch.setattr(_memory, "release_free_memory", lambda: calls.append(1))
    scores, targets = _data(4000, 3)
    before = tune_thresholds(scores, targets, strategy=strategy, n_bootstrap=20)
    assert calls == []  # 12,000 scores: below RELEASE_ELEMENTS
    monkeypatch.setattr(_memory, "RELEASE_ELEMENTS", 10_000)
    after = tune_thresholds(scores, targets, strategy=strategy, n_bootstrap=20)
    # After the diagnosis (beside the pass), the sorted pass and at the end; with the
    # estimate (beside the final walk), which "per_label" here does not need; "adaptive"
    # also before its choice and once it is made.
    assert len(calls) == {"adaptive": 6, "shrunk": 4, "per_label": 4}[strategy]
    np.testing.assert_array_equal(after.thresholds, before.thresholds)
