"""The one sorted pass per label that every result of a call is read from.

Each label's scores and targets are packed into integer keys and sorted once
per call; a label's :class:`Candidates` (one operating point per distinct
score: the points of sklearn's ``precision_recall_curve``) are read off the
sorted keys. :class:`SortedLabels` runs the pass on all CPU threads and, when
asked, keeps the sorted keys so a second walk over the labels (once the
shared threshold is known) needs no second sort.

Keys: for a non-negative IEEE float, the bit pattern read as a signed integer orders
exactly as the value does. Scores lie in [0, 1], so ``bits << 1 | target``
fits in int32 (float32 scores) or int64 (float64 scores), and sorting these
keys orders samples by score while carrying each target along in the lowest
bit: no argsort, no index arrays, no gather. Equal scores share the same
``key >> 1``, which is how distinct values are found after sorting.

float16 and bfloat16 scores are widened to float32 first, which is exact, so
no two distinct scores are ever merged.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

# At most this many scores per block of labels packed together by a walk that keeps
# nothing: its blocks reuse one block's memory, so this bounds what it holds (4 or 8
# bytes per score) and the fresh pages it faults in. A walk that keeps every key takes
# blocks _KEPT_BLOCKS times as large: it holds them all anyway, and fewer blocks read
# each cache line of the row-major inputs fewer times.
_BLOCK_ELEMENTS = 1 << 25
_KEPT_BLOCKS = 4

_WORK_DTYPES: dict[torch.dtype, tuple[type[np.floating], type[np.signedinteger]]] = {
    torch.float16: (np.float32, np.int32),
    torch.bfloat16: (np.float32, np.int32),
    torch.float32: (np.float32, np.int32),
    torch.float64: (np.float64, np.int64),
}
_TILE_ROWS = 1 << 11  # a (C, 2048) tile stays in cache while it is transposed
_TILE_LABELS = 256  # and C is at most this many labels


def work_dtypes(score_dtype: torch.dtype) -> tuple[type[np.floating], type[np.signedinteger]]:
    """The float dtype scores are compared in and the integer dtype of their keys."""
    return _WORK_DTYPES[score_dtype]


def label_block(
    scores: torch.Tensor,
    targets: torch.Tensor,
    start: int,
    stop: int,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Copy labels ``start:stop`` out of ``(n, L)`` inputs as C-ordered ``(C, n)`` arrays.

    Returns scores in the work float dtype and targets as uint8 0/1. The copy
    goes through tiles of rows: transposing a tile that fits in cache is several
    times faster than numpy's transposing copy of the whole strided block.
    ``rows`` (a permutation of the rows, optional) puts the rows in that order.
    """
    float_dtype, _ = work_dtypes(scores.dtype)
    block = scores[:, start:stop].cpu()
    if block.dtype == torch.bfloat16:
        block = block.to(torch.float32)
    source_scores = block.numpy()
    source_targets = targets[:, start:stop].cpu().numpy()
    n_samples, n_labels = source_scores.shape
    values = np.empty((n_labels, n_samples), dtype=float_dtype)
    labels = np.empty((n_labels, n_samples), dtype=np.uint8)
    for row in range(0, n_samples, _TILE_ROWS):
        tile = slice(row, row + _TILE_ROWS)
        picked = tile if rows is None else rows[tile]
        values[:, tile] = source_scores[picked].T
        labels[:, tile] = source_targets[picked].T
    return values, labels


def pack_rows(
    scores: torch.Tensor,
    targets: torch.Tensor,
    start: int,
    stop: int,
    keys: np.ndarray | list[np.ndarray],
    first: int,
    last: int,
    rows: np.ndarray | None = None,
) -> None:
    """Write key columns ``first:last`` of labels ``start:stop`` into ``keys`` ``(C, n)``
    (or into a list of ``(C_i, n)`` parts that hold the C labels in turn).

    :func:`label_block` and :func:`pack_keys` in one pass, a tile of rows at a
    time: the tile's scores are read row by row (whole cache lines of the row-major
    input), shifted (as unsigned, so -0.0 and 0.0 give one key) and OR-ed with
    its targets in a small buffer, which is then transposed into ``keys`` from
    cache. ``rows`` (a permutation of the rows, optional) puts key column ``i``
    at input row ``rows[i]``. Threads may fill disjoint column ranges at once.
    """
    float_dtype, key_dtype = work_dtypes(scores.dtype)
    unsigned = np.uint32 if key_dtype == np.int32 else np.uint64
    parts = [keys] if isinstance(keys, np.ndarray) else keys
    offsets = np.cumsum([0] + [len(part) for part in parts[:-1]]).tolist()  # first labels
    written = [(offset, part.view(unsigned)) for offset, part in zip(offsets, parts, strict=True)]
    buffer = np.empty((_TILE_ROWS, min(stop - start, _TILE_LABELS)), dtype=unsigned)
    # CPU scores numpy can view are read in place, a tile at a time; others (CUDA,
    # bfloat16) are copied over in chunks of tiles, converted by torch. (Targets come
    # checked: never bfloat16, see _checks.check_targets.)
    native = scores.device.type == "cpu" and scores.dtype != torch.bfloat16
    chunk_rows = _TILE_ROWS if native else _TILE_ROWS * 8
    # At most _TILE_LABELS labels at a time: the buffers stay small however wide the input.
    for group in range(start, stop, _TILE_LABELS):
        group_stop = min(group + _TILE_LABELS, stop)
        # The parts (and their label ranges within the group's buffer) this group fills.
        pieces = _pieces(written, group - start, group_stop - start)
        for low in range(first, last, chunk_rows):
            high = min(low + chunk_rows, last)
            picked = None if rows is None else rows[low:high]
            source, labels = _row_chunk(scores, targets, group, group_stop, low, high, picked)
            if source.dtype != float_dtype:  # float16: widened (exactly) first
                source = source.astype(float_dtype)
            if labels.dtype not in (np.bool_, np.uint8):
                labels = labels != 0
            for row in range(0, high - low, _TILE_ROWS):
                tile = slice(row, row + _TILE_ROWS)
                out = buffer[: len(source[tile]), : group_stop - group]
                np.left_shift(source[tile].view(unsigned), 1, out=out)
                np.bitwise_or(out, labels[tile], out=out, casting="unsafe")
                for out_rows, a, b in pieces:
                    out_rows[:, low + row : low + row + len(out)] = out[:, a:b].T


def _pieces(
    written: list[tuple[int, np.ndarray]], low: int, high: int
) -> list[tuple[np.ndarray, int, int]]:
    """The rows of the parts ``written`` ((first label, array) each, consecutive) that hold
    labels ``low:high``, each with the range of those labels it holds, counted from ``low``."""
    found = []
    for offset, part in written:
        first, last = max(low, offset), min(high, offset + len(part))
        if first < last:
            found.append((part[first - offset : last - offset], first - low, last - low))
    return found


def _row_chunk(
    scores: torch.Tensor,
    targets: torch.Tensor,
    start: int,
    stop: int,
    low: int,
    high: int,
    picked: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``low:high`` (or rows ``picked``) of labels ``start:stop`` as numpy arrays."""
    if picked is None:
        chunk_scores = scores[low:high, start:stop].cpu()
        chunk_targets = targets[low:high, start:stop].cpu()
    elif scores.device.type == "cpu" and targets.device.type == "cpu":
        if scores.dtype != torch.bfloat16:  # numpy's gather: no torch threads in the walk's
            return scores[:, start:stop].numpy()[picked], targets[:, start:stop].numpy()[picked]
        index = torch.from_numpy(np.ascontiguousarray(picked, dtype=np.int64))
        chunk_scores = scores[:, start:stop].index_select(0, index)
        chunk_targets = targets[:, start:stop].index_select(0, index)
    else:
        index = torch.from_numpy(np.ascontiguousarray(picked, dtype=np.int64))
        chunk_scores = scores[:, start:stop].index_select(0, index.to(scores.device)).cpu()
        chunk_targets = targets[:, start:stop].index_select(0, index.to(targets.device)).cpu()
    if chunk_scores.dtype == torch.bfloat16:
        chunk_scores = chunk_scores.to(torch.float32)
    return chunk_scores.numpy(), chunk_targets.numpy()


def packed_block(
    scores: torch.Tensor,
    targets: torch.Tensor,
    start: int,
    stop: int,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """The unsorted sort keys ``(C, n)`` of labels ``start:stop`` of ``(n, L)`` inputs
    (:func:`pack_rows` over every row, on this thread)."""
    _, key_dtype = work_dtypes(scores.dtype)
    keys = np.empty((stop - start, scores.shape[0]), dtype=key_dtype)
    pack_rows(scores, targets, start, stop, keys, 0, scores.shape[0], rows)
    return keys


def pack_keys(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Turn float ``values`` in [0, 1] and 0/1 ``labels`` into sort keys, in place.

    ``values`` is overwritten and its memory reused for the returned keys.
    """
    single = values.dtype == np.float32
    # Shifted as unsigned (well defined): -0.0's sign bit falls off the top, so -0.0 and
    # 0.0 give one key, as if -0.0 + 0.0 had been taken first.
    values.view(np.uint32 if single else np.uint64).__ilshift__(1)
    keys = values.view(np.int32 if single else np.int64)
    keys |= labels
    return keys


def pack_keys_torch(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Torch version of :func:`pack_keys` for ``(C, n)`` float32/float64 ``values``."""
    values = values + 0.0
    keys = values.view(torch.int32 if values.dtype == torch.float32 else torch.int64)
    return (keys << 1) | labels.to(keys.dtype)


def positive_flags(keys: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 (n,): the target bit of each packed key (read from its lowest byte)."""
    if out is None:
        out = np.empty(len(keys), dtype=np.uint8)
    if sys.byteorder == "little" and keys.flags.c_contiguous:
        # Each key's lowest byte, copied densely first: the strided AND alone is slower.
        np.copyto(out, keys.view(np.uint8)[:: keys.itemsize])
        return np.bitwise_and(out, 1, out=out)
    return np.bitwise_and(keys, 1, out=out, casting="unsafe")


def query_bits(thresholds: np.ndarray, float_dtype: type[np.floating]) -> np.ndarray:
    """Integer bit patterns ``q`` such that ``score >= threshold`` iff ``score_bits >= q``.

    ``q`` is the bit pattern of the smallest work-dtype value that is >= the
    float64 threshold; thresholds must lie in [0, 1].
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    rounded = thresholds.astype(float_dtype)
    below = rounded.astype(np.float64) < thresholds
    rounded[below] = np.nextafter(rounded[below], float_dtype(np.inf))
    return rounded.view(np.int32 if float_dtype == np.float32 else np.int64)


def bits_to_float(bits: np.ndarray, float_dtype: type[np.floating]) -> np.ndarray:
    """Inverse of the score half of a key: bit patterns back to float64 values."""
    return np.ascontiguousarray(bits).view(float_dtype).astype(np.float64)


class BitRank:
    """Rank and select over ``n`` 0/1 flags, packed 64 to a word (a succinct index).

    ``rank(p)``: flags set among positions ``< p`` (``0 <= p <= n``), O(1) each;
    ``select(k)``: position of the ``k``-th set flag (0-based), O(log(n / 64)) each.
    It takes ``n / 4`` bytes whatever the flags, so it can be kept for every label
    of a call where the cumulative sum it replaces (4 bytes per flag) could not.
    """

    def __init__(self, flags: np.ndarray) -> None:
        n = len(flags)
        # One zero word past the end, so position n has a word too.
        packed = np.zeros((n // 64 + 1) * 8, dtype=np.uint8)
        packed[: (n + 7) // 8] = np.packbits(flags, bitorder="little")
        self.words = packed.view(np.uint64)
        count_dtype = np.int32 if n < 2**31 else np.int64
        self.before = np.zeros(len(self.words) + 1, dtype=count_dtype)
        np.cumsum(_popcount(self.words), out=self.before[1:])
        self.total = int(self.before[-1])

    def rank(self, positions: np.ndarray) -> np.ndarray:
        """int64 flags set among positions ``< p`` for each ``p`` in 0..n."""
        positions = np.asarray(positions, dtype=np.int64)
        word = positions >> 6
        mask = (np.uint64(1) << (positions & 63).astype(np.uint64)) - np.uint64(1)
        return self.before[word] + _popcount(self.words[word] & mask)

    def select(self, ranks: np.ndarray) -> np.ndarray:
        """int64 position of the ``k``-th set flag for each ``k`` in 0..total-1."""
        shape = np.shape(ranks)
        ranks = np.asarray(ranks, dtype=np.int64).reshape(-1)
        word = np.searchsorted(self.before, ranks.astype(self.before.dtype), side="right") - 1
        within = ranks - self.before[word]
        # Byte by byte: set bits per byte, the byte holding the wanted bit, then the bit
        # within that byte from a table.
        octets = self.words[word].view(np.uint8).reshape(-1, 8)
        seen = np.cumsum(_BYTE_BITS[octets], axis=1)
        byte = np.argmax(seen > within[:, None], axis=1)
        rows = np.arange(len(byte))
        before = seen[rows, byte] - _BYTE_BITS[octets[rows, byte]]
        bit = _BIT_OF_BYTE[octets[rows, byte], within - before]
        return ((word << 6) + (byte << 3) + bit).reshape(shape)


_BYTE_BITS = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.int64)
# _BIT_OF_BYTE[b, k]: position of the k-th set bit (0-based, lowest first) of byte b.
_BIT_OF_BYTE = np.array(
    [
        [bit for bit in range(8) if byte >> bit & 1] + [0] * (8 - bin(byte).count("1"))
        for byte in range(256)
    ],
    dtype=np.int64,
)


def _popcount(words: np.ndarray) -> np.ndarray:
    """int64 set bits of each uint64 word (numpy >= 2 counts them natively)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).astype(np.int64)
    words = np.ascontiguousarray(words)
    return _BYTE_BITS[words.view(np.uint8)].reshape(*words.shape, 8).sum(-1)


# Above this many candidate indices, a full array of starts is one pass over the keys
# rather than a select per index.
_SELECT_PER_ROW = 64


class Candidates:
    """One label's candidate thresholds (its distinct scores, increasing), read from its keys.

    Candidate ``g`` is "predict positive iff ``score >= value g``". Everything
    is computed on demand from the sorted keys and cached, as two
    :class:`BitRank` indexes (``n / 4`` bytes each): of the positives (one
    pass; counts at any sorted position in O(1)) and of the positions where
    distinct scores start (one pass, only when a caller needs candidate
    indices; candidate ``g``'s position by select). Hot paths use the ``*_at``
    methods, which read just the candidates they ask for; the full
    per-candidate arrays are only for whole curves.

    Full arrays: ``bits`` (m,) the distinct scores' bit patterns;
    ``true_positives`` and ``predicted_positives`` (m,) float64 exact counts
    for ``score >= value g``. ``n_samples`` and ``positives``: the label's
    totals. The ``starts`` array lives in the
    :class:`Scratch`: valid until its next label; the indexes stay valid as
    long as the keys (:meth:`rebind` moves a kept label to another scratch).
    """

    def __init__(
        self, keys: np.ndarray, float_dtype: type[np.floating], scratch: Scratch | None = None
    ) -> None:
        self.keys = keys
        self.float_dtype = float_dtype
        self.n_samples = len(keys)
        self._scratch = scratch
        self._starts: np.ndarray | None = None
        self._positive_rank: BitRank | None = None
        self._start_rank: BitRank | None = None
        self._last_select: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def scratch(self) -> Scratch:
        if self._scratch is None:
            self._scratch = Scratch(self.n_samples, self.keys.dtype)
        return self._scratch

    def rebind(self, scratch: Scratch | None) -> Candidates:
        """Drop what lives in the old scratch (the indexes stay) and use ``scratch``."""
        self._scratch, self._starts = scratch, None
        self._last_select = None
        return self

    # -- positions in the sorted keys ---------------------------------------------------------
    @property
    def positive_rank(self) -> BitRank:
        """The :class:`BitRank` of the positives in sorted order."""
        if self._positive_rank is None:
            self._positive_rank = BitRank(positive_flags(self.keys, self.scratch.flags))
        return self._positive_rank

    @property
    def positives(self) -> int:
        return self.positive_rank.total

    def positives_before(self, positions: np.ndarray) -> np.ndarray:
        """int64 positives among sorted positions ``< p`` for each ``p`` in 0..n."""
        return self.positive_rank.rank(positions)

    def position_at(self, threshold: float) -> int:
        """First sorted position with ``score >= threshold`` (n when there is none)."""
        query = query_bits(np.array([threshold]), self.float_dtype)[0]
        return int(np.searchsorted(self.keys, self.keys.dtype.type(query) << 1, side="left"))

    def score_at(self, position: int) -> float:
        """The score at a sorted position, as float64."""
        return float(bits_to_float(self.keys[position : position + 1] >> 1, self.float_dtype)[0])

    def counts_at(self, threshold: float) -> tuple[int, int]:
        """(true positives, predicted positives) for ``score >= threshold``."""
        first = self.position_at(threshold)
        before = int(self.positives_before(np.array([first]))[0])
        return self.positives - before, self.n_samples - first

    # -- candidate indices -------------------------------------------------------------------
    @property
    def start_rank(self) -> BitRank:
        """The :class:`BitRank` of the sorted positions where a distinct score starts."""
        if self._start_rank is None:
            scratch = self.scratch
            bits = np.right_shift(self.keys, 1, out=scratch.bits)
            flags = scratch.flags
            flags[:1] = 1
            np.not_equal(bits[1:], bits[:-1], out=flags[1:].view(bool))
            self._start_rank = BitRank(flags)
        return self._start_rank

    @property
    def starts(self) -> np.ndarray:
        """(m,) sorted position where each distinct score starts."""
        if self._starts is None:
            m = self.m
            if m * _SELECT_PER_ROW <= self.n_samples:
                self._starts = self.start_rank.select(np.arange(m))
            else:
                scratch = self.scratch
                bits = np.right_shift(self.keys, 1, out=scratch.bits)
                changes = np.not_equal(bits[1:], bits[:-1], out=scratch.changes)
                # Into the scratch, not fresh arrays: no page faults per label.
                starts = scratch.starts[:m]
                starts[0] = 0
                np.compress(changes, scratch.positions, out=starts[1:])
                self._starts = starts
        return self._starts

    def _positions(self, index: np.ndarray) -> np.ndarray:
        """Sorted positions where candidates ``index`` start (the last query is remembered:
        callers often ask for counts and values at the same candidates)."""
        if self._starts is not None:
            return self._starts[index]
        index = np.asarray(index)
        last = self._last_select
        if last is not None and last[0].shape == index.shape and np.array_equal(last[0], index):
            return last[1]
        positions = self.start_rank.select(index)
        self._last_select = (index.copy(), positions)
        return positions

    @property
    def m(self) -> int:
        """Number of candidates (distinct scores)."""
        return self.start_rank.total

    def index_at(self, threshold: float) -> int:
        """Index of the first distinct score >= ``threshold`` (m when there is none)."""
        return int(self.start_rank.rank(np.array([self.position_at(threshold)]))[0])

    def true_positives_at(self, index: np.ndarray) -> np.ndarray:
        """float64 true positives of candidates ``index`` (each < m)."""
        return (self.positives - self.positives_before(self._positions(index))).astype(np.float64)

    def predicted_positives_at(self, index: np.ndarray) -> np.ndarray:
        """float64 predicted positives of candidates ``index`` (each < m)."""
        return (self.n_samples - self._positions(index)).astype(np.float64)

    def values_at(self, index: np.ndarray) -> np.ndarray:
        """float64 distinct scores of candidates ``index`` (each < m)."""
        return bits_to_float(self.keys[self._positions(index)] >> 1, self.float_dtype)

    # -- whole arrays (curves, constrained searches) -----------------------------------------
    @property
    def bits(self) -> np.ndarray:
        """(m,) bit patterns of the distinct scores."""
        return self.keys[self.starts] >> 1

    @property
    def true_positives(self) -> np.ndarray:
        return (self.positives - self.positives_before(self.starts)).astype(np.float64)

    @property
    def predicted_positives(self) -> np.ndarray:
        return (self.n_samples - self.starts).astype(np.float64)

    @property
    def values(self) -> np.ndarray:
        """(m,) float64: the distinct scores, increasing."""
        return bits_to_float(self.bits, self.float_dtype)

    def value(self, group: int) -> float:
        """The distinct score number ``group`` (0 is the lowest)."""
        return float(self.values_at(np.array([group]))[0])


class Scratch:
    """Work arrays for :class:`Candidates`, reused across the labels of a block.

    Reusing them avoids fresh page faults for every label.
    """

    def __init__(self, n_samples: int, key_dtype: np.dtype) -> None:
        self.bits = np.empty(n_samples, dtype=key_dtype)
        count_dtype = np.int32 if n_samples < 2**31 else np.int64
        self.flags = np.empty(n_samples, dtype=np.uint8)
        self.changes = np.empty(max(n_samples - 1, 0), dtype=bool)
        self.starts = np.empty(n_samples, dtype=count_dtype)
        self._positions: np.ndarray | None = None

    @property
    def positions(self) -> np.ndarray:
        """Sorted positions 1..n-1 (made on first use: most labels never need them)."""
        if self._positions is None:
            self._positions = np.arange(1, len(self.starts), dtype=self.starts.dtype)
        return self._positions


def candidates_from_sorted(
    keys: np.ndarray, float_dtype: type[np.floating], scratch: Scratch | None = None
) -> Candidates:
    """A label's :class:`Candidates` from its sort keys, sorted increasing.

    ``scratch`` (optional) must have been made for ``len(keys)`` and keys' dtype.
    """
    return Candidates(keys, float_dtype, scratch)


def block_plan(n_samples: int, n_labels: int, keep: bool = False) -> tuple[int, int]:
    """(labels per block, worker threads) for an ``(n_samples, n_labels)`` input.

    Threads follow ``torch.get_num_threads()`` (capped by the CPUs this
    process may use), so ``torch.set_num_threads`` also limits tuning. Blocks
    hold at most :data:`_BLOCK_ELEMENTS` scores (``_KEPT_BLOCKS`` times that for
    a walk that keeps its keys; one label at least) and are as even as that allows.
    """
    threads = worker_threads()
    budget = _BLOCK_ELEMENTS * (_KEPT_BLOCKS if keep else 1)
    largest = max(1, budget // max(n_samples, 1))
    n_blocks = -(-n_labels // largest)
    return -(-n_labels // max(n_blocks, 1)), threads


def block_bounds(n_samples: int, n_labels: int, keep: bool = False) -> list[int]:
    """Label indices where the blocks of :func:`block_plan` start, and ``n_labels``."""
    size, _ = block_plan(n_samples, n_labels, keep)
    return [*range(0, n_labels, max(size, 1)), n_labels]


#: Labels are handed to worker threads only with at least this many rows. Below it a
#: label's work is many small numpy calls that hold the GIL, and two threads contending
#: for it were slower than one (default path on 2 cores: 2,000 x 5,000 30.9 s against
#: 26.7 s, 2,000 x 1,000 6.2 s against 5.3 s; even at 10,000 and 20,000 rows; from
#: 65,536 rows on two threads win by 12-15 %).
LABEL_THREAD_ROWS = 1 << 14


def label_threads(n_samples: int) -> int:
    """Threads for the per-label work of inputs with ``n_samples`` rows: the
    :func:`worker_threads` from :data:`LABEL_THREAD_ROWS` rows on, else one."""
    return worker_threads() if n_samples >= LABEL_THREAD_ROWS else 1


def worker_threads() -> int:
    """Threads for per-label work: ``torch.get_num_threads()``, at most the usable CPUs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cpus))


#: At least this many keys per part of the kept keys (64 MiB of int32): a block that keeps
#: its keys is packed in one read of the rows but held in parts of whole labels, so the
#: second walk releases each part once its labels are done. Parts this large are always
#: their own mappings (above glibc's largest mmap threshold, 32 MiB), returned to the
#: system when freed.
KEPT_PART_ELEMENTS = 1 << 24


def part_bounds(n_samples: int, start: int, stop: int) -> list[int]:
    """Where the kept parts of block ``start:stop`` start (whole labels, at least
    :data:`KEPT_PART_ELEMENTS` keys each, the last one possibly fewer), and ``stop``."""
    per_part = max(1, -(-KEPT_PART_ELEMENTS // max(n_samples, 1)))
    return [*range(start, stop, per_part), stop]


def kept_bounds(n_samples: int, n_labels: int) -> list[int]:
    """Where every kept part of a ``keep=True`` walk starts, and ``n_labels``."""
    found = [0]
    for start, stop in itertools.pairwise(block_bounds(n_samples, n_labels, keep=True)):
        found += part_bounds(n_samples, start, stop)[1:]
    return found


class SortedLabels:
    """Every label of validated ``(n, L)`` inputs, sorted once.

    :meth:`walk` sorts the labels in blocks on the worker threads and calls a
    function with each label's :class:`Candidates`; with ``keep=True`` the
    sorted keys stay (4 bytes per score for float32 scores, 8 for float64) so
    :meth:`walk_again` can read the candidates a second time without sorting.
    """

    def __init__(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        self.scores, self.targets = scores, targets
        self.n_samples, self.n_labels = scores.shape
        self.float_dtype, self.key_dtype = work_dtypes(scores.dtype)
        _, self.workers = block_plan(self.n_samples, self.n_labels)  # packing's threads
        self.label_workers = label_threads(self.n_samples)
        self._bounds = kept_bounds(self.n_samples, self.n_labels)  # where kept parts start
        self._kept: dict[int, np.ndarray] = {}
        # With keep=True, each label's candidates too: their rank indexes (n / 4 bytes
        # each) spare the second walk every pass over the keys.
        self._kept_candidates: dict[int, Candidates] = {}

    def walk(
        self,
        handle: Callable[[int, Candidates], T],
        *,
        keep: bool = False,
        segments: tuple[np.ndarray, np.ndarray] | None = None,
        segment_handle: Callable[[int, Candidates, list[np.ndarray]], None] | None = None,
    ) -> list[T]:
        """``handle(label, candidates)`` for every label, sorting each; results in label order.

        Block by block (:func:`block_plan`): the worker threads pack the block's
        keys together, each a range of rows (:func:`pack_rows`), then take its
        labels one at a time, sort each (numpy releases the GIL while sorting, so
        the threads use separate cores) and call ``handle``. Only one label's
        candidates per thread are alive at a time.

        ``segments = (order, bounds)`` (row subsets, e.g. folds): the keys are
        packed in the row ``order``, so each segment (``bounds``: where each
        starts in ``order``) is a run of columns; a copy of a label's keys is
        sorted segment by segment and ``segment_handle(label, candidates,
        [sorted keys of each segment])`` is called before ``handle``. The whole
        label's sorted keys are the same as without.
        """
        order = None if segments is None or segment_handle is None else segments[0]
        spans = [] if order is None else list(itertools.pairwise(segments[1].tolist()))
        local = threading.local()

        def each(keys: dict[int, np.ndarray], bounds: list[int], label: int) -> T:
            first = bounds[bisect.bisect_right(bounds, label) - 1]
            row = keys[first][label - first]
            scratch = getattr(local, "scratch", None)
            if scratch is None:
                scratch = local.scratch = Scratch(self.n_samples, self.key_dtype)
            if order is not None:
                part = getattr(local, "part", None)
                if part is None:
                    part = local.part = np.empty(self.n_samples, dtype=self.key_dtype)
                np.copyto(part, row)  # the rows are already in segment order
                for low, high in spans:
                    part[low:high].sort()
            row.sort()
            candidates = candidates_from_sorted(row, self.float_dtype, scratch)
            if order is not None and segment_handle is not None:
                segment_handle(label, candidates, [part[low:high] for low, high in spans])
            result = handle(label, candidates)  # the candidates' caches stay valid
            if keep:
                self._kept_candidates[label] = candidates.rebind(None)
            return result

        results: list[T] = []
        pool = ThreadPoolExecutor(max_workers=self.workers) if self.workers > 1 else None
        spare: np.ndarray | None = None  # a block's keys, not kept: the next block's memory
        try:
            for start, stop in itertools.pairwise(
                block_bounds(self.n_samples, self.n_labels, keep)
            ):
                bounds = part_bounds(self.n_samples, start, stop) if keep else [start, stop]
                keys = self._pack(pool, bounds, order, None if keep else spare)
                labels = range(start, stop)
                if self.label_workers <= 1 or len(labels) <= 1:
                    results.extend(each(keys, bounds, label) for label in labels)
                else:
                    results.extend(pool.map(functools.partial(each, keys, bounds), labels))
                if keep:
                    self._kept.update(keys)
                elif spare is None:
                    # Reused (no results hold views of keys): no fresh pages, no page faults.
                    spare = keys[start]
                del keys
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return results

    def _pack(
        self,
        pool: ThreadPoolExecutor | None,
        bounds: list[int],
        order: np.ndarray | None,
        into: np.ndarray | None = None,
    ) -> dict[int, np.ndarray]:
        """The unsorted keys of labels ``bounds[0]:bounds[-1]``, each thread a range of rows,
        as one ``(C_i, n)`` array per part (``bounds``: where each part starts, and the end),
        by first label (one part: written into the first C rows of ``into`` when it has that
        many). The rows are read once for all the parts."""
        start, stop = bounds[0], bounds[-1]
        if len(bounds) == 2 and into is not None and len(into) >= stop - start:
            parts = [into[: stop - start]]
        else:
            parts = [
                np.empty((high - low, self.n_samples), dtype=self.key_dtype)
                for low, high in itertools.pairwise(bounds)
            ]
        keys = parts[0] if len(parts) == 1 else parts
        found = dict(zip(bounds[:-1], parts, strict=True))
        tiles = -(-self.n_samples // _TILE_ROWS)
        ranges = min(self.workers, tiles)
        if pool is None or ranges <= 1:
            pack_rows(self.scores, self.targets, start, stop, keys, 0, self.n_samples, order)
            return found
        edges = [
            min(self.n_samples, -(-tiles * i // ranges) * _TILE_ROWS) for i in range(ranges + 1)
        ]
        list(
            pool.map(
                lambda i: pack_rows(
                    self.scores, self.targets, start, stop, keys, edges[i], edges[i + 1], order
                ),
                range(ranges),
            )
        )
        return found

    def walk_again(self, handle: Callable[[int, Candidates], T]) -> list[T]:
        """As :meth:`walk`, over the keys kept by ``walk(..., keep=True)``; frees them.

        Nothing is copied or sorted, so the labels are handed to the threads one at a
        time (not in blocks): a label whose work is heavier (a bootstrap with many
        splits) does not leave the other threads idle at the end.
        """
        local = threading.local()
        # Labels still to be read in each kept part: a part is released as soon as its last
        # label is done, so the walk's memory falls as it goes (the work beside it, the
        # estimate, meets fewer kept keys than the walk starts with).
        left = {start: stop - start for start, stop in itertools.pairwise(self._bounds)}
        lock = threading.Lock()

        def run(label: int) -> T:
            candidates = self._kept_candidates.pop(label)
            scratch = getattr(local, "scratch", None)
            if scratch is None:
                scratch = local.scratch = Scratch(self.n_samples, self.key_dtype)
            try:
                return handle(label, candidates.rebind(scratch))
            finally:
                del candidates  # its keys are a view of the part
                start = self._bounds[bisect.bisect_right(self._bounds, label) - 1]
                with lock:
                    left[start] -= 1
                    if not left[start]:
                        self._kept.pop(start, None)

        labels = range(self.n_labels)
        if self.label_workers <= 1 or self.n_labels <= 1:
            results = [run(label) for label in labels]
        else:
            with ThreadPoolExecutor(max_workers=self.label_workers) as pool:
                results = list(pool.map(run, labels))
        self._kept.clear()
        return results

    def keys(self, label: int) -> np.ndarray:
        """The kept sorted keys (n,) of ``label`` (after ``walk(..., keep=True)``)."""
        start = self._bounds[bisect.bisect_right(self._bounds, label) - 1]
        return self._kept[start][label - start]

    def counts_at(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(true positives, predicted positives) int64 (L,) for ``score >= thresholds[j]``.

        Read from the kept keys by binary search, then frees them.
        """
        queries = query_bits(np.asarray(thresholds, dtype=np.float64), self.float_dtype)
        tp = np.empty(self.n_labels, dtype=np.int64)
        pp = np.empty(self.n_labels, dtype=np.int64)
        for label in range(self.n_labels):
            keys = self.keys(label)
            first = int(np.searchsorted(keys, keys.dtype.type(queries[label]) << 1, side="left"))
            pp[label] = len(keys) - first
            kept = self._kept_candidates.get(label)
            if kept is None:
                tp[label] = int(np.count_nonzero(keys[first:] & 1))
            else:
                tp[label] = kept.positives - int(kept.positives_before(np.array([first]))[0])
        self._kept.clear()
        self._kept_candidates.clear()
        return tp, pp
