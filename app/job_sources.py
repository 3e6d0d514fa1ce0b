"""Which datasets a tune's `source=` may name: only those under a root the operator lists
in `LABELCUT_DATA_SOURCES` (local directories, or fsspec URL prefixes such as
`s3://bucket/sets`). Everything is decided from the text and the local file system's
metadata before a byte of data is read.

Local sources: an absolute path (a directory, a file, or a glob), no `..` component, no
`%` (so no URL-encoded `..` or `/`), no control characters; resolved with every symlink
followed, it must lie under a root (itself resolved), and so must every file it names
(a directory's files, found recursively, and a glob's matches), so a symlink inside the
root that points out of it is refused. `file://` is refused: name a local dataset by its
path. URL sources: the scheme and host must be a root's, and the path must lie under the
root's path, compared after the same textual checks (remote stores have no symlinks to
follow; their own permissions still apply).
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_GLOB_CHARS = re.compile(r"[*?\[]")
MAX_SOURCE_CHARS = 4096
MAX_LISTED_FILES = 100_000


class SourceRefused(Exception):
    """source= names something outside the allowed roots, or is malformed (403)."""


class SourceMissing(ValueError):
    """source= is allowed but names no data (422)."""


@dataclass(frozen=True)
class Root:
    """One allowed root: a resolved local directory (`scheme` None) or a URL prefix."""

    scheme: str | None
    netloc: str
    path: str

    @property
    def shown(self) -> str:
        return self.path if self.scheme is None else f"{self.scheme}://{self.netloc}{self.path}"


def _check_text(source: str) -> None:
    if not source or len(source) > MAX_SOURCE_CHARS:
        raise SourceRefused(f"source must be 1 to {MAX_SOURCE_CHARS} characters.")
    if any(ord(c) < 32 or ord(c) == 127 for c in source):
        raise SourceRefused("source holds control characters.")
    if "%" in source:
        raise SourceRefused("source holds '%': URL-encoded names are not accepted.")
    if "\\" in source:
        raise SourceRefused("source holds a backslash; use '/' between path components.")
    if any(part == ".." for part in re.split(r"/", source)):
        raise SourceRefused("source holds a '..' component.")


def parse_roots(roots: list[str]) -> list[Root]:
    """The roots as configured; `file://` roots become local paths. Raises ValueError for
    a root that is neither an absolute path nor a URL."""
    found = []
    for text in roots:
        match = _SCHEME.match(text)
        if match is not None and match.group(1).lower() == "file":
            text = match.group(2) or "/"
            match = None
        if match is None:
            if not os.path.isabs(text):
                raise ValueError(f"LABELCUT_DATA_SOURCES: '{text}' is not an absolute path.")
            found.append(Root(None, "", os.path.realpath(text)))
            continue
        scheme, rest = match.group(1).lower(), match.group(2)
        netloc, _, path = rest.partition("/")
        path = posixpath.normpath("/" + path) if path else "/"
        found.append(Root(scheme, netloc, path))
    return found


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_source(source: str, roots: list[str]) -> str:
    """The dataset to read for `source`, if allowed: a local path resolved (symlinks
    followed) or the URL normalised. Raises SourceRefused (403) or SourceMissing (422)."""
    allowed = parse_roots(roots)
    if not allowed:
        raise SourceRefused(
            "source= is turned off: LABELCUT_DATA_SOURCES lists no roots that datasets may "
            "be read from."
        )
    _check_text(source)
    match = _SCHEME.match(source)
    if match is None:
        return _check_local(source, [r for r in allowed if r.scheme is None])
    scheme = match.group(1).lower()
    if scheme == "file":
        raise SourceRefused("file:// is not accepted: name a local dataset by its path.")
    return _check_url(scheme, match.group(2), [r for r in allowed if r.scheme == scheme])


def _check_url(scheme: str, rest: str, roots: list[Root]) -> str:
    if not roots:
        raise SourceRefused(f"No allowed root uses the scheme '{scheme}'.")
    if "?" in rest or "#" in rest or "@" in rest.partition("/")[0]:
        raise SourceRefused("source may not hold a query, a fragment or credentials.")
    netloc, _, path = rest.partition("/")
    path = posixpath.normpath("/" + path)
    for root in roots:
        if netloc == root.netloc and _under(path, root.path):
            return f"{scheme}://{netloc}{path}"
    raise SourceRefused(f"source '{scheme}://{netloc}{path}' is not under an allowed root.")


def _check_local(source: str, roots: list[Root]) -> str:
    if not roots:
        raise SourceRefused("No allowed root is a local directory.")
    if not os.path.isabs(source):
        raise SourceRefused("A local source must be an absolute path.")
    pattern = None
    if _GLOB_CHARS.search(source):
        # The directory part must hold no glob characters: only the last component matches.
        head, tail = os.path.split(source)
        if _GLOB_CHARS.search(head):
            raise SourceRefused("Only the last component of a source may be a glob pattern.")
        base, pattern = head, tail
    else:
        base = source
    resolved = os.path.realpath(base)
    root = next((r for r in roots if _under(resolved, r.path)), None)
    if root is None:
        raise SourceRefused(f"source '{source}' is not under an allowed root.")
    files = _files_of(resolved, pattern, root.path)
    if not files:
        raise SourceMissing(f"source '{source}' names no files.")
    for name in files:
        real = os.path.realpath(name)
        shown = os.path.relpath(name, resolved) if name != resolved else os.path.basename(name)
        if not _under(real, root.path):
            raise SourceRefused(
                f"source '{source}' holds '{shown}', a link that leads out of the allowed root."
            )
        if os.path.isdir(real):
            continue  # a linked directory: its files are listed and checked too
        try:
            regular = stat.S_ISREG(os.stat(real).st_mode)
        except OSError:
            regular = False  # a dangling link
        if not regular:
            # A FIFO or a device would block or never end a read: refuse it unopened.
            raise SourceRefused(f"source '{source}' holds '{shown}', which is not a regular file.")
    return resolved if pattern is None else os.path.join(resolved, pattern)


def _files_of(base: str, pattern: str | None, root: str) -> list[str]:
    """Every file a dataset at `base` (with a glob `pattern` of its entries) would read."""
    if pattern is not None:
        entries = sorted(glob.glob(os.path.join(glob.escape(base), pattern)))
        found: list[str] = []
        for entry in entries:
            found.extend(_files_of(entry, None, root) if os.path.isdir(entry) else [entry])
        return found
    if os.path.isfile(base):
        return [base]
    if not os.path.isdir(base):
        return []
    found = []
    seen: set[str] = set()
    stack = [base]
    # Every entry is listed by the path that reaches it; the caller checks where each one
    # leads. A linked directory is walked through its link (once per real directory, so a
    # loop of links ends), and the walk stops past MAX_LISTED_FILES.
    while stack:
        directory = stack.pop()
        real = os.path.realpath(directory)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=True):
                if entry.is_symlink():
                    found.append(entry.path)  # its target is checked too
                    if not _under(os.path.realpath(entry.path), root):
                        continue  # refused by the caller: never list what lies outside
                stack.append(entry.path)
            else:
                found.append(entry.path)
        if len(found) > MAX_LISTED_FILES:
            raise SourceRefused(f"source holds more than {MAX_LISTED_FILES} files.")
    return found


def local_path(source: str) -> Path | None:
    """The local path of a checked source (None for a URL)."""
    return None if _SCHEME.match(source) else Path(source)
