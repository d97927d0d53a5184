"""The upstream weights' license and notice files (LICENSE, NOTICE, COPYING; .md/.txt/.rst), copied into
a published folder under ``upstream/``: from the weights' directory for local weights, from the pinned
revision of the hub repository for hub weights (its file list, then each notice file). Random weights
have none. A file larger than ``MAX_NOTICE_BYTES``, a link, or a hub that cannot be reached is not
copied, and the reason is returned for the card: publishing never fails for want of a notice, and never
claims one it did not copy."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..registry.entry import ExportEntry

NOTICE = re.compile(r"^(licen[cs]e|notice|copying)([.-][\w.-]*)?$", re.IGNORECASE)
#: a license text is a few KB (Apache-2.0: 11 KB); anything far larger is not one
MAX_NOTICE_BYTES = 1 << 20
FOLDER = "upstream"


@dataclass(frozen=True)
class Notices:
    files: tuple[str, ...]  # relative to the published folder
    source: str
    missing: str = ""  # why none could be copied, when that is so


def _local(root: Path, dest: Path) -> list[str]:
    if not root.is_dir():  # a single weights file: what lies beside it is not known to be its notice
        return []
    copied = []
    for path in sorted(root.iterdir()):
        if NOTICE.match(path.name) and path.is_file() and not path.is_symlink():
            if path.stat().st_size > MAX_NOTICE_BYTES:
                continue
            shutil.copyfile(path, dest / path.name)
            copied.append(path.name)
    return copied


def _hub(repo: str, revision: str, dest: Path) -> list[str]:
    from huggingface_hub import HfApi, hf_hub_download

    names = [n for n in HfApi().list_repo_files(repo, revision=revision) if "/" not in n and NOTICE.match(n)]
    copied = []
    for name in sorted(names):
        path = Path(hf_hub_download(repo, name, revision=revision))
        if path.stat().st_size <= MAX_NOTICE_BYTES:
            shutil.copyfile(path, dest / name)
            copied.append(name)
    return copied


def gather(entry: ExportEntry, folder: Path, progress: Callable[[str], None] = lambda _: None) -> Notices:
    """Copy the weights' notice files into ``folder/upstream``; what was copied, or why nothing was."""
    weights: dict[str, Any] = dict(entry.weights)
    kind = weights.get("kind")
    source = str(weights.get("source", kind))
    if kind == "random":
        return Notices((), source, "random weights: no upstream files")
    dest = folder / FOLDER
    dest.mkdir(exist_ok=True)
    try:
        if kind == "local":
            progress(f"license files of {weights.get('path')}")
            copied = _local(Path(str(weights.get("path", ""))), dest)
        elif kind == "hub":
            progress(f"license files of {weights.get('repo')}@{weights.get('revision')}")
            copied = _hub(str(weights.get("repo")), str(weights.get("revision")), dest)
        else:
            copied = []
    except Exception as exc:  # noqa: BLE001 - offline, gone, or refused: said on the card, never fatal
        shutil.rmtree(dest, ignore_errors=True)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
        return Notices((), source, f"the weights' license files could not be fetched ({reason})")
    if not copied:
        dest.rmdir()
        return Notices((), source, "no LICENSE, NOTICE or COPYING file was found with the weights")
    return Notices(tuple(f"{FOLDER}/{name}" for name in copied), source)
