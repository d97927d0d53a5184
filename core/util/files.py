"""Filesystem facts and moves zoo needs when it writes files: the process's umask, a file written
aside and renamed into place, a new directory built aside and renamed into place (a reader never
sees half of either; a failure leaves nothing)."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """``write(file)`` into a temporary file beside ``path``, then renamed onto it, with the mode a new
    file gets (mkstemp's is 0600); on any failure the temporary file is removed and ``path`` untouched."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def is_free_directory(dest: Path) -> bool:
    """``dest`` does not exist, or is an empty directory: somewhere ``new_directory`` may build."""
    return not dest.exists() or (dest.is_dir() and not any(dest.iterdir()))


@contextmanager
def new_directory(dest: Path) -> Iterator[Path]:
    """A directory to fill, built as a hidden sibling of ``dest`` and renamed to ``dest`` (absent or
    empty: ``is_free_directory``, checked by the caller) when the block ends, with the mode a new
    directory gets (mkdtemp's is 0700); if the block raises, the sibling is removed and ``dest`` untouched."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~current_umask())
        if dest.exists():
            dest.rmdir()  # empty (is_free_directory)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
