"""Which directories are exports zoo made, and what of them zoo may read or delete.

A registry entry is data read from disk: a hand-edited or hostile ``registry.toml`` can name any
path. So an entry's directory is used (read by ``zoo verify`` and ``zoo run``, deleted from by
``zoo rm``) only when all of these hold:

- it is ``<out>/<id>``: its name is the entry's id and it lies directly in the output root the
  entry records (``out``; entries without one: anywhere below the registry's own folder),
  symbolic links resolved, and the directory itself is not a link;
- it carries zoo's marker (``.zoo-export.json``), written when the export was published, naming
  that id and the sha256 of every file zoo placed there;
- nothing inside it is a symbolic link leading out of it.

``zoo rm`` then deletes only the files the entry lists whose bytes still hash to what the marker
recorded (a file already gone is fine), and the folders that held them once empty. Anything else
(a user's notes, a file added inside a package, an edited file, an empty folder the user made, a
link) is kept and named. Nothing is deleted, and the entry is kept, when the directory fails a
rule above.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..util.hashing import file_sha256
from .entry import ExportEntry, Item

if TYPE_CHECKING:
    from .store import Registry

#: the marker publish writes into every export directory
MARKER = ".zoo-export.json"
MARKER_VERSION = 1
#: a marker is a few hundred bytes per file; a larger one is not zoo's
MAX_MARKER_BYTES = 64 << 20


class NotAnExport(RuntimeError):
    """An entry's directory fails a rule above; ``reason`` says which (the message adds the id)."""

    def __init__(self, export_id: str, reason: str):
        super().__init__(f"export {export_id}: {reason}")
        self.reason = reason


def marker_record(export_id: str, files: Mapping[str, str]) -> dict[str, Any]:
    """What ``MARKER`` holds: the export id and ``{path relative to the export: sha256}``."""
    return {"zoo_export": MARKER_VERSION, "id": export_id, "files": dict(sorted(files.items()))}


def write_marker(directory: Path, export_id: str, files: Mapping[str, str]) -> None:
    (directory / MARKER).write_text(json.dumps(marker_record(export_id, files), indent=0))


def recorded_root(registry: "Registry", entry: ExportEntry) -> Path:
    """The output root an entry records (``out``), else the registry's folder."""
    if entry.out:
        path = Path(entry.out)
        return path if path.is_absolute() else registry.root / path
    return registry.root


def entry_path(registry: "Registry", entry: ExportEntry) -> Path:
    """Where an entry says its directory is (unchecked: for messages, never for reading)."""
    path = Path(entry.path)
    return path if path.is_absolute() else registry.root / path


def locate(registry: "Registry", entry: ExportEntry) -> Path:
    """The entry's directory, after the location rule and the marker (NotAnExport otherwise);
    a missing directory is returned as it is (the caller reports it missing)."""
    path = entry_path(registry, entry)
    export_id = entry.id
    root = recorded_root(registry, entry).resolve()
    if path.is_symlink():
        raise NotAnExport(export_id, f"its directory {path} is a symbolic link; zoo places exports as real directories")
    resolved = path.resolve()
    placed = resolved.parent == root if entry.out else root in resolved.parents
    if resolved.name != export_id or not placed:
        where = (
            f"directly in the output root it records ({root})" if entry.out else f"below the registry's folder ({root})"
        )
        raise NotAnExport(
            export_id,
            f"its path {entry.path!r} is not {export_id}/ {where}; "
            "zoo reads and deletes only <out>/<id> directories it placed",
        )
    if not resolved.exists():
        return resolved
    read_marker(resolved, export_id)
    return resolved


def read_marker(directory: Path, export_id: str) -> dict[str, str]:
    """The marker's ``{relative path: sha256}``; NotAnExport when absent, malformed or of another id."""
    marker = directory / MARKER
    if marker.is_symlink() or not marker.is_file():
        raise NotAnExport(
            export_id,
            f"{directory} carries no zoo marker ({MARKER}); it was not placed by "
            "this zoo (or predates markers), so zoo neither reads nor deletes it (`zoo rm --keep-files ID` drops the "
            "entry only)",
        )
    if marker.stat().st_size > MAX_MARKER_BYTES:
        raise NotAnExport(export_id, f"its zoo marker {marker} is larger than any marker zoo writes")
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NotAnExport(export_id, f"its zoo marker {marker} is unreadable ({type(exc).__name__})") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not (isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())):
        raise NotAnExport(export_id, f"its zoo marker {marker} is malformed (needs an id and a files table)")
    if data.get("id") != export_id:
        raise NotAnExport(export_id, f"its zoo marker {marker} names another export ({data.get('id')!r})")
    return files


def links_leading_out(directory: Path) -> list[str]:
    """Symbolic links below ``directory`` whose target lies outside it (relative paths)."""
    inside = directory.resolve()
    found = []
    for base, dirs, files in os.walk(directory, followlinks=False):
        for name in dirs + files:
            path = Path(base) / name
            if path.is_symlink():
                target = path.resolve()
                if target != inside and inside not in target.parents:
                    found.append(path.relative_to(directory).as_posix())
    return sorted(found)


def checked_directory(registry: "Registry", entry: ExportEntry) -> Path:
    """``locate`` plus the link rule: the directory zoo may read (NotAnExport otherwise)."""
    directory = locate(registry, entry)
    if directory.exists():
        out = links_leading_out(directory)
        if out:
            raise NotAnExport(
                entry.id,
                f"{directory} holds symbolic links leading out of it ({', '.join(out[:5])}); "
                "zoo neither reads nor deletes through them",
            )
    return directory


def changed_files(directory: Path, export_id: str, item: Item) -> list[str]:
    """The files of one listed item whose bytes differ from the sha256 the marker recorded at
    publish time (relative to the export): names what changed inside a package whose digest no
    longer matches. Empty when the marker cannot say."""
    try:
        recorded = read_marker(directory, export_id)
    except NotAnExport:
        return []
    rels = [f"{item.path}/{f}" for f in item.files] if item.files else [item.path]
    return [
        rel
        for rel in rels
        if (directory / rel).is_file() and rel in recorded and file_sha256(directory / rel) != recorded[rel]
    ]


def listed_files(entry: ExportEntry) -> list[str]:
    """Every file an entry lists, relative to its directory (a package's files under its path)."""
    files: list[str] = []
    for item in [*entry.components, *entry.constants, *entry.parity]:
        if item.files:
            files.extend(f"{item.path}/{f}" for f in item.files)
        else:
            files.append(item.path)
    return files


@dataclass
class Removal:
    """What ``zoo rm`` did with one export."""

    export_id: str
    directory: str
    #: why nothing was deleted and the entry kept ("" when the files were handled)
    refused: str = ""
    deleted: int = 0
    #: (relative path, why it was kept)
    kept: list[tuple[str, str]] = field(default_factory=list)
    #: the entry was dropped without touching the directory (--keep-files)
    files_untouched: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.export_id,
            "directory": self.directory,
            "removed": not self.refused,
            "refused": self.refused or None,
            "deleted_files": self.deleted,
            "kept": [{"path": p, "why": w} for p, w in self.kept],
            "files_untouched": self.files_untouched,
        }


def delete_files(registry: "Registry", entry: ExportEntry) -> Removal:
    """Delete what zoo provably placed for ``entry`` (module docstring); ``refused`` says why not.
    An OSError while deleting is raised after naming the file (the caller keeps the entry then:
    a second ``zoo rm`` finishes the job, files already gone being fine)."""
    removal = Removal(entry.id, str(entry_path(registry, entry)))
    try:
        directory = checked_directory(registry, entry)
    except NotAnExport as exc:
        removal.refused = exc.reason
        return removal
    removal.directory = str(directory)
    if not directory.exists():
        return removal  # already gone: only the entry is left to drop
    recorded = read_marker(directory, entry.id)
    singles = {item.path: item.sha256 for item in [*entry.constants, *entry.parity] if not item.files}
    plan: list[Path] = []
    zoo_dirs = {directory}
    for rel in listed_files(entry):
        path = directory / rel
        if not (path.exists() or path.is_symlink()):
            continue
        if path.is_symlink() or not path.is_file():
            removal.kept.append((rel, "not a regular file"))
            continue
        digest = file_sha256(path)
        if recorded.get(rel) != digest or (rel in singles and singles[rel] != digest):
            removal.kept.append(
                (rel, "changed since the export was made" if rel in recorded else "not recorded by the export's marker")
            )
            continue
        plan.append(path)
        zoo_dirs.update(p for p in path.parents if directory in p.parents)
    for path in plan:
        try:
            path.unlink()
        except OSError as exc:
            raise OSError(exc.errno, f"cannot delete {path}: {exc.strerror}") from None
        removal.deleted += 1
    pending = directory / ".zoo-pending.json"
    if pending.is_file() and not pending.is_symlink():
        pending.unlink()
    for folder in sorted(zoo_dirs - {directory}, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    kept = {rel for rel, _ in removal.kept}
    for base, dirs, files in os.walk(directory, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(base) / name
            rel = path.relative_to(directory).as_posix()
            if rel == MARKER or rel in kept:
                continue
            if path.is_symlink() or not path.is_dir():
                removal.kept.append((rel, "not listed by the export"))
            elif not any(path.iterdir()):
                removal.kept.append((rel + "/", "a folder zoo did not make"))
    (directory / MARKER).unlink(missing_ok=True)
    if not any(directory.iterdir()):
        directory.rmdir()
    return removal
