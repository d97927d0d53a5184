"""`zoo registry merge`: registries written on different machines or CI jobs, combined into one.

An entry keeps its files where they are: its directory is resolved through its own registry (the
location rule and zoo's marker, ``exportdir.locate``) and, unless ``verify`` is off, every file is
hashed against the entry (``verify.verify_entry``); its ``path`` and ``out`` are then written
relative to the target registry. Identical exports (the same ``inputs_sha256``, or the same id and
directory) appear once; the same id for two different exports is a conflict that refuses the whole
merge, naming both sources. The target is written once, under its lock, atomically; a refused merge
leaves it as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .entry import ExportEntry
from .store import Registry, RegistryError


class MergeConflict(RegistryError):
    """Two sources (or a source and the target) hold different exports under one id."""


@dataclass(frozen=True)
class Incoming:
    entry: ExportEntry
    source: Path
    directory: Path  # resolved


@dataclass
class MergeResult:
    added: list[tuple[str, str]] = field(default_factory=list)  # (id, source)
    duplicates: list[tuple[str, str, str]] = field(default_factory=list)  # (id, the entry kept, source)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": [{"id": i, "source": s} for i, s in self.added],
            "duplicates": [{"id": i, "kept": k, "source": s} for i, k, s in self.duplicates],
        }


def collect(
    sources: list[Path], target: Registry, verify: bool = True, progress: Callable[[str], None] = lambda _: None
) -> list[Incoming]:
    """Every entry of ``sources``, its directory checked (and its files hashed with ``verify``);
    RegistryError naming the entry and its source for the first that fails."""
    from .verify import verify_entry

    incoming = []
    for path in sources:
        source = Registry(path)
        if source.target.resolve() == target.target.resolve():
            raise RegistryError(f"{path} is the registry being merged into")
        if not source.target.is_file():
            raise RegistryError(f"{path} does not exist or is not a file")
        for entry in source.exports():
            where = f"{path}: export {entry.id}"
            directory = source.export_dir(entry)  # the location rule and the marker, or RegistryError
            if not directory.is_dir():
                raise RegistryError(f"{where}: its directory {directory} does not exist")
            if verify:
                progress(f"verifying {entry.id} ({path})")
                problems = verify_entry(source, entry)
                if problems:
                    raise RegistryError(
                        f"{where} fails `zoo verify`: {problems[0].message} (--no-verify skips hashing)"
                    )
            incoming.append(Incoming(entry, Path(path), directory.resolve()))
    return incoming


def plan(
    existing: list[ExportEntry], target: Registry, incoming: list[Incoming], target_name: str
) -> tuple[list[dict[str, Any]], MergeResult]:
    """The records to append to ``existing`` (the target's entries) and what became of each incoming
    entry; MergeConflict when one id names two different exports."""
    result = MergeResult()
    seen: dict[str, tuple[ExportEntry, str, Path | None]] = {}
    for e in existing:
        seen[e.id] = (e, target_name, _directory(target, e))
    by_inputs = {e.inputs_sha256: e.id for e in existing if e.inputs_sha256 and e.status == "valid"}
    records = []
    for item in incoming:
        entry, source = item.entry, str(item.source)
        if entry.id in seen:
            other, other_source, other_dir = seen[entry.id]
            if other_dir == item.directory or (entry.inputs_sha256 and other.inputs_sha256 == entry.inputs_sha256):
                result.duplicates.append((entry.id, other.id, source))
                continue
            raise MergeConflict(
                f"export id {entry.id!r} names two different exports: one in {other_source}, one in {source}; "
                "nothing was merged"
            )
        kept = by_inputs.get(entry.inputs_sha256) if entry.inputs_sha256 else None
        if kept is not None and entry.status == "valid":
            result.duplicates.append((entry.id, kept, source))
            continue
        record = entry.record()
        record["path"] = target.relative(item.directory)
        record["out"] = target.relative(item.directory.parent)
        records.append(record)
        seen[entry.id] = (entry, source, item.directory)
        if entry.inputs_sha256 and entry.status == "valid":
            by_inputs[entry.inputs_sha256] = entry.id
        result.added.append((entry.id, source))
    return records, result


def _directory(registry: Registry, entry: ExportEntry) -> Path | None:
    try:
        return registry.export_dir(entry).resolve()
    except RegistryError:
        return None


def merge(
    target: Registry, sources: list[Path], verify: bool = True, progress: Callable[[str], None] = lambda _: None
) -> MergeResult:
    """Merge ``sources`` into ``target`` (see the module docstring)."""
    incoming = collect(sources, target, verify, progress)
    holder: dict[str, MergeResult] = {}

    def choose(existing: list[ExportEntry]) -> list[dict[str, Any]]:
        records, holder["result"] = plan(existing, target, incoming, str(target.path))
        return records

    target.add_all(choose)
    return holder["result"]
