"""The stage cache and the staging area for exports.

A finished stage is a directory ``<root>/stages/<key>`` holding its files and a
``.complete`` marker, where ``key`` hashes everything the stage depends on
(model, plugin version and sources, zoo's own sources, variant, weights identity,
tool versions). Stages are built in ``<root>/tmp`` and renamed into place, so a
crash never leaves a half-built stage that looks finished. Leftovers of dead
processes are removed on the next start.

Nothing read back is trusted: the marker records the sha256 of the stage's files
when it is published, and every reuse hashes them again. A stage whose files no
longer match (a flipped byte in a cached package, a missing file, a marker
without a hash) is a miss: it is moved away and rebuilt, and the miss says why.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..util.cachedir import ENV_VAR, default_cache_root, plugin_cache_dir  # noqa: F401  (re-exported: the stage cache lives there)
from ..util.files import current_umask
from ..util.hashing import tree_sha256

_MARKER = ".complete"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: work directories zoo creates are named ``zoo-<pid>-<label>-<random>``; only those are ever removed
_WORK_PREFIX = "zoo-"
#: the cache root's sentinel (the Cache Directory Tagging convention, which backup tools honour)
SENTINEL = "CACHEDIR.TAG"
_SENTINEL_TEXT = "Signature: 8a477f597d28d172789f06886806bc55\n# zoo's stage cache (https://bford.info/cachedir/)\n"


def remove_dead_workdirs(parent: Path) -> None:
    """Remove ``zoo-<pid>-*`` work directories whose process is gone, and nothing else."""
    if not parent.is_dir():
        return
    for child in parent.iterdir():
        if not child.name.startswith(_WORK_PREFIX) or not child.is_dir() or child.is_symlink():
            continue
        pid_text = child.name[len(_WORK_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(child, ignore_errors=True)


def workdir(parent: Path, label: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{os.getpid()}-{label}-", dir=parent))


def same_filesystem(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def stage_digest(path: Path) -> str:
    """sha256 of a stage directory's files, its marker left out."""
    return tree_sha256(path, exclude=frozenset({_MARKER}))


class StageCache:
    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        # absolute: stages join paths below it onto work directories (a relative root was joined twice)
        self.root = (Path(root) if root is not None else default_cache_root()).absolute()
        self.enabled = enabled
        fresh = not self.root.exists() or not any(self.root.iterdir())
        self.root.mkdir(parents=True, exist_ok=True)
        if fresh:
            (self.root / SENTINEL).write_text(_SENTINEL_TEXT)
        #: a directory zoo did not create as its cache (no sentinel) is used, but never cleaned
        self.owned = (self.root / SENTINEL).is_file()
        if self.owned:
            remove_dead_workdirs(self.root / "tmp")
            remove_dead_workdirs(self.root / "staging")
        #: why the last ``get`` missed, when the stage existed but could not be trusted
        self.last_rejection = ""

    def get(self, key: str) -> Path | None:
        """The published stage ``key`` if its files still hash to what was recorded, else None
        (a stage that fails the check is moved away, so that it is rebuilt)."""
        self.last_rejection = ""
        path = self.root / "stages" / key
        if not self.enabled or not (path / _MARKER).exists():
            return None
        try:
            recorded = json.loads((path / _MARKER).read_text()).get("sha256")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if not isinstance(recorded, str):
            self.last_rejection = "its marker records no hash"
        elif stage_digest(path) != recorded:
            self.last_rejection = "its files no longer match the hash recorded when it was built"
        else:
            return path
        self._discard(path)
        return None

    def _discard(self, path: Path) -> None:
        trash = workdir(self.root / "tmp", "bad")
        try:
            os.rename(path, trash / "stage")
        except OSError:
            pass  # another process already replaced or removed it
        shutil.rmtree(trash, ignore_errors=True)

    def put(
        self, key: str, build: Callable[[Path], Any], meta: dict[str, Any] | None = None, replace: bool = False
    ) -> tuple[Path, Any]:
        """Run ``build(tmpdir)`` and publish the directory under ``key``.

        When another process published the same key first, its directory is kept
        (it may be being read) and this build is discarded; ``replace`` (``--force``)
        swaps the new build in instead.
        """
        tmp = workdir(self.root / "tmp", key[:12])
        try:
            try:
                result = build(tmp)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    where = exc.filename or tmp
                    raise OSError(
                        exc.errno,
                        f"no space left writing {where} in the stage cache {self.root} "
                        "(free space there, or move the cache with --cache / ZOO_CACHE)",
                    ) from None
                raise
            (tmp / _MARKER).write_text(json.dumps({**(meta or {}), "sha256": stage_digest(tmp)}, sort_keys=True))
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

    def tidy_staging(self, staging: Path) -> None:
        """Remove ``<out>/.zoo-staging`` once the last staging directory in it is gone (a failed
        export leaves nothing in the output directory, not even an empty folder)."""
        parent = staging.parent
        if parent.name == ".zoo-staging":
            try:
                parent.rmdir()
            except OSError:
                pass  # another export is staging there, or it was never made

    def staging_dir(self, out_dir: Path, label: str) -> Path:
        """A work directory on the same filesystem as ``out_dir``, outside it when possible."""
        out_dir.mkdir(parents=True, exist_ok=True)
        same_fs = same_filesystem(self.root, out_dir)
        parent = self.root / "staging" if same_fs else out_dir / ".zoo-staging"
        if self.owned or not same_fs:
            remove_dead_workdirs(parent)
        staging = workdir(parent, label)
        os.chmod(staging, 0o777 & ~current_umask())  # an export is readable like any other output (mkdtemp gives 0700)
        return staging
