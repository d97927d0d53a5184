"""The stage cache and the staging area for exports.

A finished stage is a directory ``<root>/stages/<key>`` holding its files and a
``.complete`` marker, where ``key`` hashes everything the stage depends on
(model, plugin version and sources, variant, weights identity, tool versions).
Stages are built in ``<root>/tmp`` and renamed into place, so a crash never
leaves a half-built stage that looks finished. Leftovers of dead processes are
removed on the next start.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

ENV_VAR = "ZOO_CACHE"
_MARKER = ".complete"


def default_cache_root() -> Path:
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zoo"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_workdirs(parent: Path) -> None:
    """Remove ``<pid>-*`` work directories whose process is gone."""
    if not parent.is_dir():
        return
    for child in parent.iterdir():
        pid_text = child.name.split("-", 1)[0].lstrip(".")
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(child, ignore_errors=True)


def workdir(parent: Path, label: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{label}-", dir=parent))


class StageCache:
    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else default_cache_root()
        self.enabled = enabled
        self.root.mkdir(parents=True, exist_ok=True)
        remove_dead_workdirs(self.root / "tmp")
        remove_dead_workdirs(self.root / "staging")

    def get(self, key: str) -> Path | None:
        path = self.root / "stages" / key
        if self.enabled and (path / _MARKER).exists():
            return path
        return None

    def put(self, key: str, build: Callable[[Path], Any], meta: dict[str, Any] | None = None, replace: bool = False) -> tuple[Path, Any]:
        """Run ``build(tmpdir)`` and publish the directory under ``key``.

        When another process published the same key first, its directory is kept
        (it may be being read) and this build is discarded; ``replace`` (``--force``)
        swaps the new build in instead.
        """
        tmp = workdir(self.root / "tmp", key[:12])
        try:
            result = build(tmp)
            (tmp / _MARKER).write_text(json.dumps(meta or {}, sort_keys=True))
            final = self.root / "stages" / key
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists() and replace:
                trash = workdir(self.root / "tmp", "old-" + key[:12])
                os.rename(final, trash / "stage")
                shutil.rmtree(trash, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / _MARKER).exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process published it first: keep theirs
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final, result

    def staging_dir(self, out_dir: Path, label: str) -> Path:
        """A work directory on the same filesystem as ``out_dir``, outside it when possible."""
        out_dir.mkdir(parents=True, exist_ok=True)
        same_fs = os.stat(self.root).st_dev == os.stat(out_dir).st_dev
        parent = self.root / "staging" if same_fs else out_dir / ".zoo-staging"
        remove_dead_workdirs(parent)
        return workdir(parent, label)
