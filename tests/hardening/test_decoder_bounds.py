"""Issue 12, cases 3, 8 (uploads) and 13, against real servers: every decoder refuses what
it cannot afford before allocating it, with the server's peak memory over its level
before the request measured, /healthz answered meanwhile, and the store unchanged."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .bombs import npy_header, npz_deflate_bomb, zip_of
from .conftest import snapshot
from .probes import HealthProbe, PeakMemory

pytestmark = pytest.mark.e2e

MAX_DATA_MB = 256  # the setting of the Parquet case


def start(tmp_path_factory, name: str, yeast_npz_bytes: bytes, env: dict[str, str]):
    from ..support.server import Server

    s = Server(tmp_path_factory.mktemp(name) / "data", env=env)
    s.wait_ready()
    seeded = httpx.post(
        s.url + "/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}, timeout=60
    )
    assert seeded.status_code == 200, seeded.text
    return s


@pytest.fixture(scope="module")
def limited(tmp_path_factory, yeast_npz_bytes):
    s = start(tmp_path_factory, "decoders", yeast_npz_bytes, {"LABELCUT_MAX_DATA_MB": "256"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def defaults(tmp_path_factory, yeast_npz_bytes):
    s = start(tmp_path_factory, "decoders-defaults", yeast_npz_bytes, {})
    yield s
    s.stop()


def refused(server, name: str, content: bytes, copies: int = 1) -> tuple[list, float, float]:
    """Upload `content` (`copies` at once); the answers, peak MB grown and worst /healthz."""
    before = snapshot(server.client())
    memory = PeakMemory(server.proc.pid)
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(server.client().post("/tune-thresholds", files={"file": (name, content)}))

    with HealthProbe(server.url) as probe:
        threads = [threading.Thread(target=send) for _ in range(copies)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    assert len(answers) == copies
    assert snapshot(server.client()) == before
    grew = memory.grew_mb()
    print(
        f"{name}: {[a.status_code for a in answers]}, peak +{grew:.0f} MB, "
        f"worst /healthz {probe.worst * 1000:.0f} ms"
    )
    return answers, grew, probe.worst


# --- Parquet whose metadata lies (case 3) -----------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _padded_varint(n: int, length: int) -> bytes:
    """`n` as a thrift varint stretched to `length` bytes (continuation bits, zero groups):
    the same value, so the footer keeps its size and offsets."""
    encoded = bytearray(_varint(n))
    while len(encoded) < length:
        encoded[-1] |= 0x80
        encoded.append(0)
    return bytes(encoded)


def lying_parquet(n_rows: int, say: int, lie_in: Callable[[int], bool]) -> bytes:
    """A Parquet file of `n_rows` zeros in 3 int64 columns whose footer says `say` rows in
    the fields `lie_in(i)` picks among the i64 fields holding `n_rows`, in footer order
    (pyarrow 26): 0 the file's row count, 1/3/5 the column chunks' value counts, 2/4/6
    per-column statistics, 7 the row group's row count."""
    buf = io.BytesIO()
    table = pa.table({f"c{i}": np.zeros(n_rows, np.int64) for i in range(3)})
    pq.write_table(table, buf, row_group_size=n_rows)
    raw = buf.getvalue()
    length = int.from_bytes(raw[-8:-4], "little")
    start = len(raw) - 8 - length
    footer = bytearray(raw[start:-8])
    zigzag = _varint(2 * n_rows)
    at, found = 0, 0
    while (at := footer.find(zigzag, at)) >= 0:
        if lie_in(found):
            footer[at : at + len(zigzag)] = _padded_varint(2 * say, len(zigzag))
        found += 1
        at += 1
    assert found == 8, found
    patched = raw[:start] + bytes(footer) + raw[-8:]
    pq.ParquetFile(io.BytesIO(patched))  # still a readable footer
    return patched


def test_parquet_footer_that_lies_is_refused_before_decoding(limited):
    # The footer says 100 rows; the row group holds 5,000,000 (120 MB decoded).
    content = lying_parquet(5_000_000, 100, lambda i: i == 0)
    assert len(content) < 1_000_000
    (answer,), grew, worst = refused(limited, "v.parquet", content)
    assert answer.status_code == 413, answer.text
    assert "5000000 rows" in answer.json()["detail"]
    assert "LABELCUT_MAX_DATA_MB" in answer.json()["detail"]
    assert grew < MAX_DATA_MB + 150, grew
    assert worst < 0.5


def test_parquet_row_group_that_lies_about_its_columns_is_refused(limited):
    # File and row group say 100 rows; the column chunks say (and hold) 5,000,000.
    content = lying_parquet(5_000_000, 100, lambda i: i in (0, 7))
    (answer,), grew, worst = refused(limited, "v.parquet", content)
    assert answer.status_code == 422, answer.text
    assert (
        "row group 0 declares 100 rows but its column 'c0' declares 5000000"
        in (answer.json()["detail"])
    )
    assert grew < MAX_DATA_MB + 150, grew
    assert worst < 0.5


def test_parquet_whose_metadata_agrees_on_a_lie_decodes_only_what_it_declares(limited):
    # Every count says 100 rows while the pages hold 5,000,000: the decoder reads 100.
    content = lying_parquet(5_000_000, 100, lambda i: True)
    (answer,), grew, worst = refused(limited, "v.parquet", content)
    assert answer.status_code == 422, answer.text  # then: no label columns
    assert "no column for label(s)" in answer.json()["detail"]
    assert grew < 100, grew
    assert worst < 0.5


def test_csv_that_decodes_past_the_limit_is_cut_off_while_streaming(limited):
    # 40 MB of "0," cells decode to 8 bytes each: 160 MB, past 256 / 3 MB per upload.
    header = ",".join(f"c{i}" for i in range(117)) + "\n"
    line = ",".join(["0"] * 117) + "\n"
    content = (header + line * (40 * 2**20 // len(line))).encode()
    (answer,), grew, worst = refused(limited, "v.csv", content)
    assert answer.status_code == 413, answer.text
    assert "LABELCUT_MAX_DATA_MB" in answer.json()["detail"]
    assert grew < MAX_DATA_MB + 150, grew
    assert worst < 0.5


# --- .npz (cases 8 and 13) ---------------------------------------------------------------


def _npy_with_header_text(text: str) -> bytes:
    text = text.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


NPZ_CASES = [
    (
        "unbalanced-brackets",
        {
            "Y.npy": _npy_with_header_text(
                "{'descr': '<f8', 'fortran_order': False, 'shape': ((1, 2), }"
            ),
            "scores.npy": npy_header((1, 14)),
        },
        422,
        "unreadable .npy header",
    ),
    (
        "unclosed-string",
        {
            "Y.npy": _npy_with_header_text("{'descr': '<f8, 'shape': (1, 14)}"),
            "scores.npy": npy_header((1, 14)),
        },
        422,
        "Array 'Y'",
    ),
    (
        "shape-0-by-10**30",
        {"Y.npy": npy_header((0, 10**30)), "scores.npy": npy_header((0, 14))},
        422,
        "declares an axis longer than any array can be",
    ),
    (
        "shape-10**30-by-0",
        {"Y.npy": npy_header((0, 14)), "scores.npy": npy_header((10**30, 0))},
        422,
        "Array 'scores' declares an axis",
    ),
    (
        "inflates-past-its-header",
        {
            "Y.npy": npy_header((2, 14), "|u1") + bytes(28) + bytes(10_000_000),
            "scores.npy": npy_header((2, 14), "<f4") + bytes(112),
        },
        422,
        "Array 'Y' in the .npz file inflates to 10000157 bytes, but its .npy header declares 157",
    ),
    (
        "shorter-than-its-header",
        {
            "Y.npy": npy_header((2, 14), "|u1") + bytes(10),
            "scores.npy": npy_header((2, 14), "<f4") + bytes(112),
        },
        422,
        "Array 'Y' in the .npz file inflates to",
    ),
]


@pytest.mark.parametrize(
    ("members", "status", "needle"),
    [(m, s, n) for _, m, s, n in NPZ_CASES],
    ids=[i for i, _, _, _ in NPZ_CASES],
)
def test_forged_npz_member_is_4xx_not_500(limited, members, status, needle):
    (answer,), grew, worst = refused(limited, "v.npz", zip_of(members))
    assert answer.status_code == status, answer.text
    assert needle in answer.json()["detail"], answer.text
    assert grew < 100, grew
    assert worst < 0.5


def test_small_npz_that_inflates_to_gigabytes_is_refused_at_default_limits(defaults):
    # X (4,194,304 x 103) float32 + Y (4,194,304 x 14) uint8: 1,704 MiB of zeros, under the
    # default LABELCUT_MAX_DATA_MB of 2048 (so accepted and held before), ~2 MB on the wire.
    content = npz_deflate_bomb(4_194_304)
    assert len(content) < 20 * 2**20
    answers, grew, worst = refused(defaults, "v.npz", content, copies=3)
    for answer in answers:
        assert answer.status_code == 413, answer.text
        detail = answer.json()["detail"]
        assert "1704.0 MB once inflated" in detail and "LABELCUT_MAX_DATA_MB" in detail
    assert grew < 1024, grew
    assert worst < 0.5
