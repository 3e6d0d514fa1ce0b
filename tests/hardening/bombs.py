"""Hand-built hostile files: .npz members whose .npy header declares a huge shape,
and a real deflate bomb built without ever holding its inflated bytes in memory."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

_CHUNK = 1 << 24  # 16 MiB of zeros per deflate block group


def npy_header(shape: tuple[int, ...], descr: str = "<f8", version: int = 1) -> bytes:
    """A .npy header (no data) that declares `shape`; numpy pads it to 64 bytes."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    text = text.ljust(118) + "\n"
    return b"\x93NUMPY" + bytes([version, 0]) + len(text).to_bytes(2, "little") + text.encode()


def zip_of(members: dict[str, bytes]) -> bytes:
    """A plain zip (deflated) of small members, written with zipfile."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buf.getvalue()


def _zeros_deflated(prefix: bytes, n_zeros: int) -> tuple[bytes, int]:
    """Raw deflate of `prefix` followed by `n_zeros` zero bytes, and its CRC-32.

    Z_FULL_FLUSH resets the compressor, so the blocks for one 16 MiB run of zeros can
    be compressed once and repeated; the remainder gets its own blocks, and an empty
    final block closes the stream.
    """
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)]
    crc = zlib.crc32(prefix)
    zeros = bytes(_CHUNK)
    body = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = body.compress(zeros) + body.flush(zlib.Z_FULL_FLUSH)
    for _ in range(n_zeros // _CHUNK):
        parts.append(piece)
        crc = zlib.crc32(zeros, crc)
    tail = bytes(n_zeros % _CHUNK)
    if tail:
        rest = zlib.compressobj(9, zlib.DEFLATED, -15)
        parts.append(rest.compress(tail) + rest.flush(zlib.Z_FULL_FLUSH))
        crc = zlib.crc32(tail, crc)
    parts.append(zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))
    return b"".join(parts), crc


def _raw_zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip archive from already deflated members: (name, deflated, crc32, size)."""
    out = io.BytesIO()
    central = []
    for name, data, crc, size in members:
        offset = out.tell()
        encoded = name.encode()
        out.write(
            struct.pack(
                "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0
            )
        )
        out.write(encoded + data)
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                8,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + encoded
        )
    directory = b"".join(central)
    start = out.tell()
    out.write(directory)
    out.write(
        struct.pack(
            "<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(directory), start, 0
        )
    )
    return out.getvalue()


def npz_deflate_bomb(n_rows: int, n_features: int = 103, n_labels: int = 14) -> bytes:
    """A valid .npz whose X (n_rows, n_features) float32 zeros inflate from a few KB per
    16 MiB; Y is a small honest (n_rows, n_labels) uint8 array of zeros, also deflated.
    Each member inflates to exactly its .npy header plus the declared data."""
    members = []
    for name, shape, descr, itemsize in (
        ("X.npy", (n_rows, n_features), "<f4", 4),
        ("Y.npy", (n_rows, n_labels), "|u1", 1),
    ):
        header = npy_header(shape, descr)
        n_bytes = int(np.prod(shape)) * itemsize
        data, crc = _zeros_deflated(header, n_bytes)
        members.append((name, data, crc, len(header) + n_bytes))
    return _raw_zip(members)
