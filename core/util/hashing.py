"""Content hashes of files and package trees, as recorded in registry.toml, and of plain data (cache keys)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_files(root: str | Path, exclude: frozenset[str] = frozenset()) -> list[Path]:
    """Regular files under ``root`` (or ``root`` itself), sorted by relative POSIX path, without
    the top-level names in ``exclude``."""
    root = Path(root)
    if root.is_file():
        return [root]
    files = (p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] not in exclude)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def tree_sha256(
    root: str | Path,
    exclude: frozenset[str] = frozenset(),
    progress: "Callable[[int, int, int, int], None] | None" = None,
) -> str:
    """sha256 of a file, or of a directory tree.

    For a tree, each file contributes its relative POSIX path, a NUL byte, its
    size in decimal, a NUL byte and its bytes, in sorted path order: renaming,
    adding, removing or editing any file changes the digest. ``progress(bytes done, bytes in
    all, files done, files in all)`` is told after each file (a large directory takes minutes).
    """
    return _hash_tree(Path(root), exclude, progress, per_file=False)[0]


def tree_hashes(root: str | Path) -> tuple[str, dict[str, str]]:
    """``tree_sha256(root)`` and each file's own sha256 (relative POSIX path -> hex), reading every
    file once. For a single file the map has one key, its name."""
    return _hash_tree(Path(root), frozenset(), None, per_file=True)


def _hash_tree(
    root: Path, exclude: frozenset[str], progress: "Callable[[int, int, int, int], None] | None", per_file: bool
) -> tuple[str, dict[str, str]]:
    """The one pass both digests come from: the tree's, and each file's own when ``per_file``."""
    if root.is_file():
        digest = file_sha256(root)
        return digest, ({root.name: digest} if per_file else {})
    if not root.is_dir():
        raise FileNotFoundError(root)
    tree = hashlib.sha256()
    own: dict[str, str] = {}
    files = tree_files(root, exclude)
    sizes = [p.stat().st_size for p in files]
    total, done = sum(sizes), 0
    for index, (path, size) in enumerate(zip(files, sizes)):
        rel = path.relative_to(root).as_posix()
        tree.update(rel.encode() + b"\0" + str(size).encode() + b"\0")
        mine = hashlib.sha256() if per_file else None
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                tree.update(chunk)
                if mine is not None:
                    mine.update(chunk)
        if mine is not None:
            own[rel] = mine.hexdigest()
        done += size
        if progress is not None:
            progress(done, total, index + 1, len(files))
    return tree.hexdigest(), own


def tree_size(root: str | Path) -> int:
    return sum(p.stat().st_size for p in tree_files(root))


def python_sources_sha256(root: str | Path) -> str:
    """sha256 over the ``*.py`` files below ``root`` (or the file itself): relative path, NUL, bytes."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix())
    base = root.parent if root.is_file() else root
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(base).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def stable_hash(obj: Any) -> str:
    """sha256 of a JSON rendering with sorted keys (for cache keys)."""

    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, float) and math.isnan(o):
            return "nan"
        raise TypeError(f"cannot hash {type(o).__name__}")

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=default).encode()).hexdigest()
