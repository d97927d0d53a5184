"""`zoo verify`: re-hash what the registry says was exported."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet, Any, Callable, Iterable, Mapping

from ..util.hashing import tree_sha256
from .entry import ExportEntry, Item
from .exportdir import NotAnExport, changed_files, checked_directory
from .store import Registry


@dataclass
class Problem:
    export_id: str
    kind: str  # export | component | constant
    name: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return self.__dict__.copy()


def missing_files(registry: Registry, entry: ExportEntry, item: Item) -> list[str]:
    """The registered files of a package that are gone (paths relative to the export)."""
    root = registry.member(entry, item.path)
    return [f"{item.path}/{f}" for f in (item.files or ()) if not (root / f).is_file()]


Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def verify_entry(registry: Registry, entry: ExportEntry, progress: Progress = _quiet) -> list[Problem]:
    """Re-hash everything the entry lists. A directory zoo did not provably place (``exportdir``) is
    one problem, and nothing in it is read."""
    try:
        root = checked_directory(registry, entry)
    except NotAnExport as exc:
        return [Problem(entry.id, "export", entry.id, exc.reason)]
    problems: list[Problem] = []
    if not root.is_dir():
        return [Problem(entry.id, "export", entry.id, f"export directory {root} is missing")]
    items: Iterable[tuple[str, Item]] = (
        [("component", c) for c in entry.components]
        + [("constant", c) for c in entry.constants]
        + [("parity", c) for c in entry.parity]
    )
    for kind, item in items:
        progress(f"{entry.id}: hashing {kind} {item.name}")
        path = registry.member(entry, item.path)
        if not path.exists():
            problems.append(Problem(entry.id, kind, item.name, f"{path} is missing"))
            continue
        gone = missing_files(registry, entry, item)
        if gone:
            problems.append(
                Problem(
                    entry.id,
                    kind,
                    item.name,
                    f"missing {', '.join(gone)} (of the {len(item.files or ())} files registered)",
                )
            )
            continue
        digest = tree_sha256(path)
        if digest != item.sha256:
            changed = changed_files(root, entry.id, item) if item.files else []
            which = f" ({', '.join(changed[:3])} changed)" if changed else ""
            problems.append(
                Problem(
                    entry.id,
                    kind,
                    item.name,
                    f"sha256 {digest[:16]}… differs from registered {item.sha256[:16]}…{which}",
                )
            )
    return problems


def _stat(path: Path) -> list[int]:
    st = os.stat(path, follow_symlinks=False)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def intact(
    registry: Registry, entry: ExportEntry, record_dir: Path | None, progress: Progress = _quiet
) -> list[Problem]:
    """What ``zoo run`` checks before it loads an export: its directory is one zoo placed, and every
    component and constant is as registered (no file missing, none added inside a package, each
    item hashing to its registered sha256). Hashing is skipped for an item whose files' size,
    mtime, ctime and inode all equal what the last full check recorded in ``record_dir`` (zoo's
    cache): any write to a file changes its ctime, which no user can set back, so a changed byte
    is always re-hashed."""
    try:
        checked_directory(registry, entry)
    except NotAnExport as exc:
        return [Problem(entry.id, "export", entry.id, exc.reason)]
    record = None
    if record_dir is not None:
        name = hashlib.sha256(f"{registry.target}\0{entry.id}".encode()).hexdigest()[:32]
        record = record_dir / f"{name}.json"
    try:
        recorded = json.loads(record.read_text()) if record is not None and record.is_file() else {}
    except (OSError, ValueError):
        recorded = {}
    recorded = recorded if isinstance(recorded, dict) else {}
    seen: dict[str, Any] = {}
    problems: list[Problem] = []
    for kind, item in [("component", c) for c in entry.components] + [("constant", c) for c in entry.constants]:
        path = registry.member(entry, item.path)
        if not path.exists():
            problems.append(Problem(entry.id, kind, item.name, f"{path} is missing"))
            continue
        listed = item.files
        if listed:
            present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() or p.is_symlink()}
            gone, extra = sorted(set(listed) - present), sorted(present - set(listed))
            if gone or extra:
                what = "; ".join(
                    x
                    for x in (
                        f"missing {', '.join(gone[:3])}" if gone else "",
                        f"holds files the export did not place: {', '.join(extra[:3])}" if extra else "",
                    )
                    if x
                )
                problems.append(Problem(entry.id, kind, item.name, f"{path}: {what}"))
                continue
            stats = {f: _stat(path / f) for f in listed}
        else:
            stats = {"": _stat(path)}
        key = f"{kind}:{item.path}"
        state = {"sha256": item.sha256, "stats": stats}
        if recorded.get(key) == state:
            seen[key] = state
            continue
        progress(f"{entry.id}: hashing {kind} {item.name}")
        digest = tree_sha256(path)
        if digest != item.sha256:
            changed = changed_files(registry.export_dir(entry), entry.id, item)
            which = f" ({', '.join(changed[:3])} changed)" if changed and listed else ""
            problems.append(
                Problem(
                    entry.id,
                    kind,
                    item.name,
                    f"{path} does not match its registered sha256{which}: it changed since it was exported",
                )
            )
        else:
            seen[key] = state
    if record is not None and not problems and seen != recorded:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(seen, sort_keys=True))
            os.replace(tmp, record)
        except OSError:
            pass  # the next run hashes again
    return problems


def execute_entry(
    registry: Registry, entry: ExportEntry, failed_hash: AbstractSet[str] = frozenset(), progress: Progress = _quiet
) -> tuple[list[Problem], list[dict[str, Any]]]:
    """Re-run the recorded parity inputs through each package on disk, at every package level this
    machine can run (``levels.PACKAGE_LEVELS``: the MIL interpreter anywhere, CoreML on macOS).
    A component (or its parity file) that failed its hash is not executed: its bytes are not the
    ones that were validated, and a corrupt package may not even load."""
    return execute_packages(
        entry.id,
        {c.name: registry.member(entry, c.path) for c in entry.components},
        {p.name: registry.member(entry, p.path) for p in entry.parity},
        entry.validation,
        entry.precision,
        failed_hash,
        progress,
    )


def execute_packages(
    export_id: str,
    packages: Mapping[str, Path],
    parity_files: Mapping[str, Path],
    records: list[dict[str, Any]],
    precision: str,
    failed_hash: AbstractSet[str] = frozenset(),
    progress: Progress = _quiet,
) -> tuple[list[Problem], list[dict[str, Any]]]:
    """``execute_entry`` on packages and parity files wherever they are (a registered export, or a
    folder ``zoo publish`` wrote), judged by the thresholds in ``records`` (the export's validation)."""
    from ..validation.checks import integer_outputs_from_records, tolerance_from_records
    from ..validation.levels import PACKAGE_LEVELS

    levels = [level for level in PACKAGE_LEVELS if level.available()[0]]
    problems, results = [], []
    for name, package in packages.items():
        if name in failed_hash:
            continue  # reported by the hash check
        if name not in parity_files:  # never a silent skip: nothing to execute is a problem
            problems.append(
                Problem(
                    export_id, "component", name, "no parity inputs recorded for this component: it cannot be executed"
                )
            )
            continue
        if not package.exists() or not parity_files[name].exists():
            continue  # already reported as missing by the hash check
        for level in levels:
            tolerance = tolerance_from_records(records, name, level.name) or tolerance_from_records(
                records, name, "reference"
            )
            if tolerance is None:
                problems.append(
                    Problem(export_id, "component", name, f"no recorded {level.name} threshold to check against")
                )
                continue
            integers, tempo = integer_outputs_from_records(records, name, level.name)
            progress(f"{export_id}: executing {name} at level {level.name}")
            for check in level.execute(
                name,
                package,
                parity_files[name],
                tolerance,
                integer_outputs=integers,
                precision=precision,
                integer_tempo=tempo,
            ):
                results.append({"export": export_id, **check.record()})
                if check.status != "passed":
                    detail = check.reason or f"{check.metric} {check.value:.3g} vs threshold {check.threshold:.3g}"
                    problems.append(
                        Problem(
                            export_id, "component", name, f"executed package fails parity at {level.name}: {detail}"
                        )
                    )
    return problems, results


def verify(
    registry: Registry,
    key: str = "",
    execute: bool = False,
    progress: Progress = _quiet,
    checkpoint: str | None = None,
    default_checkpoint: Callable[[str], str] = lambda model: "",
) -> tuple[list[ExportEntry], list[Problem], list[dict[str, Any]]]:
    """Verify the exports ``key`` selects (of ``checkpoint`` if given; an entry naming none is of
    ``default_checkpoint(its model)``)."""
    entries = list(registry.find(key))
    if checkpoint is not None:
        entries = [e for e in entries if e.checkpoint(default_checkpoint(e.model)) == checkpoint]
    problems: list[Problem] = []
    executed: list[dict[str, Any]] = []
    for entry in entries:
        found = verify_entry(registry, entry, progress)
        problems.extend(found)
        if execute and any(p.kind == "export" for p in found):
            continue  # not a directory zoo may read: nothing in it is executed
        if execute:
            failed_hash = {p.name for p in found if p.kind in ("component", "parity")}
            more, results = execute_entry(registry, entry, failed_hash, progress)
            problems.extend(more)
            executed.extend(results)
    return entries, problems, executed
