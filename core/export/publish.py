"""Publishing a finished export: the staging directory, the pending marker, the registry entry.

Everything is copied into a staging directory (in the cache, on the output's
filesystem), each package re-hashed against the digest it was validated under,
then renamed to ``<out>/<id>`` under the registry lock right before the entry is
written. A marker in the directory names the process and registry: if the
process dies between the rename and the registry write, the next export removes
the unregistered directory (only then: see :func:`remove_abandoned_exports`).
Every export also carries zoo's own marker (``exportdir.MARKER``: its id and the
sha256 of every file placed), which ``zoo verify``, ``zoo run`` and ``zoo rm``
require before they read or delete anything there (``exportdir``).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..registry.entry import ExportEntry, Item
from ..registry.exportdir import entry_path, recorded_root, write_marker
from ..registry.store import Registry, RegistryError
from ..util.hashing import tree_hashes, tree_size
from .cache import StageCache, _pid_alive

PENDING_MARKER = ".zoo-pending.json"


@dataclass(frozen=True)
class ValidatedPackage:
    path: Path
    sha256: str  # the digest the package was validated under
    functions: tuple[str, ...]
    compression: dict[str, Any] | None = None  # CompressionRecord.as_dict() of a compressed package


@dataclass(frozen=True)
class Bundle:
    """Everything an export places in its directory, each already validated."""

    packages: Mapping[str, ValidatedPackage]
    constants: Mapping[str, tuple[Path, str]]  # name -> (file, path below constants/)
    parity: Mapping[str, Path]  # component -> parity file


@dataclass(frozen=True)
class Provenance:
    """What an entry records about where an export came from."""

    model: str
    variant: dict[str, Any]
    plugin: dict[str, str]
    weights: dict[str, Any]
    tools: dict[str, str]
    inputs_sha256: str = ""
    #: what making it cost (peak_rss_mb, seconds), recorded in the entry
    resources: dict[str, Any] = field(default_factory=dict)


def _item(
    staging: Path,
    dest: Path,
    name: str,
    hashes: dict[str, str],
    functions: tuple[str, ...] | None = None,
    compression: dict[str, Any] | None = None,
) -> Item:
    """The registry's record of one placed file or package; each of its files' sha256 goes into
    ``hashes`` (relative to the export) for the marker."""
    rel = dest.relative_to(staging).as_posix()
    digest, own = tree_hashes(dest)
    files = tuple(own) if dest.is_dir() else None
    hashes.update({f"{rel}/{f}": h for f, h in own.items()} if dest.is_dir() else {rel: digest})
    return Item(name, rel, digest, tree_size(dest), functions, files, compression)


class PlacementError(OSError):
    """Copying an export into place failed (a full disk, a permission); the message names where."""


def _placement_error(exc: BaseException, where: Path) -> PlacementError:
    """One line naming the file and the reason, instead of shutil's list of (src, dst, why) tuples."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        first = exc.args[0][0]
        src, dst, why = first if isinstance(first, tuple) and len(first) == 3 else ("", where, str(first))
        more = f" (and {len(exc.args[0]) - 1} more files)" if len(exc.args[0]) > 1 else ""
        return PlacementError(errno.EIO, f"cannot write {dst}: {why}{more}")
    if isinstance(exc, OSError):
        hint = "; free space there or choose another --out" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return PlacementError(
            exc.errno or errno.EIO, f"cannot write {exc.filename or where}: {exc.strerror or exc}{hint}"
        )
    return PlacementError(errno.EIO, f"cannot write {where}: {exc}")


def publish(
    bundle: Bundle,
    provenance: Provenance,
    level: str,
    validation: list[dict[str, Any]],
    out_dir: Path,
    registry: Registry,
    cache: StageCache,
    reuse_identical: bool = True,
) -> tuple[ExportEntry, Path, bool]:
    """Copy ``bundle`` into ``<out_dir>/<id>`` and register it; returns (the registry entry, the
    export directory, whether an identical export registered meanwhile was reused instead)."""
    stamp = datetime.now(timezone.utc)
    export_id = f"{provenance.model}-{provenance.variant['name']}-{stamp:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    staging = cache.staging_dir(out_dir, export_id)
    final = out_dir / export_id
    hashes: dict[str, str] = {}
    try:
        try:
            components = []
            for name, package in bundle.packages.items():
                dest = staging / f"{name}.mlpackage"
                shutil.copytree(package.path, dest)
                item = _item(staging, dest, name, hashes, package.functions, package.compression)
                if item.sha256 != package.sha256:
                    raise RuntimeError(
                        f"{name}: the copy placed in the export does not match the validated package (sha256 "
                        f"{item.sha256[:16]}…)"
                    )
                components.append(item)
            constants = []
            for name, (source, rel) in sorted(bundle.constants.items()):
                dest = staging / "constants" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
                constants.append(_item(staging, dest, name, hashes))
            (staging / "parity").mkdir()
            parity = []
            for comp, source in bundle.parity.items():
                dest = staging / "parity" / f"{comp}.safetensors.gz"
                shutil.copy2(source, dest)
                parity.append(_item(staging, dest, comp, hashes))
            write_marker(staging, export_id, hashes)
        except (shutil.Error, OSError) as exc:
            raise _placement_error(exc, staging) from None
        entry = ExportEntry(
            id=export_id,
            model=provenance.model,
            validation_level=level,
            created_at=stamp.isoformat(timespec="seconds"),
            path=registry.relative(final.resolve()),
            out=registry.relative(out_dir.resolve()),
            plugin=provenance.plugin,
            variant=provenance.variant,
            weights=provenance.weights,
            tools=provenance.tools,
            inputs_sha256=provenance.inputs_sha256,
            resources=dict(provenance.resources),
            components=components,
            constants=constants,
            parity=parity,
            validation=validation,
        )
        if final.exists():
            raise FileExistsError(f"{final} already exists")
        # a marker naming this process: if it dies between moving the export into place and
        # writing the registry, the next export removes the unregistered directory
        marker = {"id": export_id, "pid": os.getpid(), "registry": str(registry.path.resolve())}
        (staging / PENDING_MARKER).write_text(json.dumps(marker))

        def move_into_place() -> None:
            os.rename(staging, final)

        try:
            existing = registry.add(entry, before_write=move_into_place, reuse_identical=reuse_identical)
        except BaseException:
            if final.exists() and not staging.exists():
                shutil.rmtree(final, ignore_errors=True)
            raise
        if existing is not None:  # registered by a concurrent identical export: ours is dropped
            return existing, entry_path(registry, existing), True
        (final / PENDING_MARKER).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        cache.tidy_staging(staging)
    return entry, final, False


def _pending(out_dir: Path) -> Iterator[tuple[Path, dict[str, Any] | None, str]]:
    """Every ``<out>/<dir>/.zoo-pending.json``: (export directory, its marker if well-formed, why not)."""
    if not out_dir.is_dir():
        return
    for marker in sorted(out_dir.glob(f"*/{PENDING_MARKER}")):
        directory = marker.parent
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError) as exc:
            yield directory, None, f"unreadable marker ({type(exc).__name__})"
            continue
        if not (
            isinstance(info, dict)
            and isinstance(info.get("id"), str)
            and type(info.get("pid")) is int
            and isinstance(info.get("registry"), str)
        ):
            yield directory, None, "malformed marker (needs a string id, an integer pid and a registry path)"
        elif info["id"] != directory.name:
            yield directory, None, f"its marker names another export ({info['id']!r})"
        else:
            yield directory, info, ""


def _registered(info: dict[str, Any], registry: Registry) -> bool | None:
    """Is the marker's export in the registry it names, or in ``registry``? None: cannot tell."""
    ids: set[str] = set()
    for reg in {Path(info["registry"]), registry.path.resolve()}:
        try:
            ids.update(e.id for e in Registry(reg).exports())
        except (RegistryError, OSError):
            return None
    return info["id"] in ids


def remove_abandoned_exports(out_dir: Path, registry: Registry) -> tuple[list[Path], list[str]]:
    """Export directories moved into place by a process that died before registering them.

    Deleted only when zoo provably made them and nobody registered them: a well-formed marker
    naming the directory itself and a dead process, and the export in neither the registry the
    marker records nor this one. Everything else is left alone, with a warning when suspicious.
    Returns (removed directories, warnings)."""
    removed: list[Path] = []
    warnings: list[str] = []
    for directory, info, problem in _pending(out_dir):
        if info is None:
            warnings.append(f"{directory}: {problem}; left alone")
            continue
        if _pid_alive(info["pid"]):
            continue  # still being registered
        registered = _registered(info, registry)
        if registered is None:
            warnings.append(f"{directory}: cannot read the registry {info['registry']} its marker names; left alone")
        elif registered:
            (directory / PENDING_MARKER).unlink(missing_ok=True)  # registered; the process died before tidying up
        else:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed, warnings


def orphaned_exports(registry: Registry) -> list[Path]:
    """Complete export directories no registry lists, left by a process killed between moving its
    export into place and registering it (next to this registry's exports, or in ./exports)."""
    parents = (
        {entry_path(registry, e).parent for e in registry.exports()}
        | {recorded_root(registry, e) for e in registry.exports()}
        | {Path("exports")}
    )
    found = []
    for parent in sorted(parents):
        for directory, info, _ in _pending(parent):
            if info is not None and not _pid_alive(info["pid"]) and _registered(info, registry) is False:
                found.append(directory)
    return found
