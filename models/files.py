"""File helpers shared by the bundle code: the one sha256 helper and atomic-write temp names."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1 << 20


def sha256_file(source: str | os.PathLike[str] | BinaryIO, chunk_size: int = _CHUNK) -> str:
    """The hex sha256 of a file's whole content, read in chunks of ``chunk_size`` bytes.

    ``source`` is a path, or a seekable binary file object: that is read from its
    start and left at position 0 (so an upload can be hashed, then parsed).
    """
    digest = hashlib.sha256()
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
        return digest.hexdigest()
    source.seek(0)
    while chunk := source.read(chunk_size):
        digest.update(chunk)
    source.seek(0)
    return digest.hexdigest()


def temp_path(directory: Path, file_name: str) -> Path:
    """A new empty file in ``directory`` to write ``file_name`` into before renaming it.

    Not ``tempfile.mkstemp``: its 0600 mode would survive the rename, while
    ``open()`` honours the umask. The real name stays at the end because
    ``torch.export.save`` warns unless the name ends in ``.pt2``.
    """
    path = Path(directory) / f".tmp-{uuid.uuid4().hex}-{file_name}"
    path.open("xb").close()
    return path


def dump_json(value: Any, indent: int = 0) -> str:
    """JSON with one key per line but lists of numbers or strings kept on one line."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(k)}: {dump_json(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [pad + dump_json(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(value)
