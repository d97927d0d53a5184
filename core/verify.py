"""`zoo verify`: re-hash what the registry says was exported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .hashing import tree_sha256
from .registry import Registry


@dataclass
class Problem:
    export_id: str
    kind: str  # export | component | constant
    name: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return self.__dict__.copy()


def missing_files(registry: Registry, entry: dict[str, Any], item: dict[str, Any]) -> list[str]:
    """The registered files of a package that are gone (paths relative to the export)."""
    root = registry.member(entry, item["path"])
    return [f"{item['path']}/{f}" for f in item.get("files", []) if not (root / f).is_file()]


Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def verify_entry(registry: Registry, entry: dict[str, Any], progress: Progress = _quiet) -> list[Problem]:
    root = registry.export_dir(entry)
    problems: list[Problem] = []
    if not root.is_dir():
        return [Problem(entry["id"], "export", entry["id"], f"export directory {root} is missing")]
    items: Iterable[tuple[str, dict[str, Any]]] = (
        [("component", c) for c in entry.get("components", [])]
        + [("constant", c) for c in entry.get("constants", [])]
        + [("parity", c) for c in entry.get("parity", [])]
    )
    for kind, item in items:
        progress(f"{entry['id']}: hashing {kind} {item['name']}")
        path = registry.member(entry, item["path"])
        if not path.exists():
            problems.append(Problem(entry["id"], kind, item["name"], f"{path} is missing"))
            continue
        gone = missing_files(registry, entry, item)
        if gone:
            problems.append(Problem(entry["id"], kind, item["name"], f"missing {', '.join(gone)} (of the {len(item['files'])} files registered)"))
            continue
        digest = tree_sha256(path)
        if digest != item["sha256"]:
            problems.append(Problem(entry["id"], kind, item["name"], f"sha256 {digest[:16]}… differs from registered {item['sha256'][:16]}…"))
    return problems


def execute_entry(registry: Registry, entry: dict[str, Any], failed_hash: set[str] = frozenset(), progress: Progress = _quiet) -> tuple[list[Problem], list[dict[str, Any]]]:
    """Re-run the recorded parity inputs through each package on disk, at every package level this
    machine can run (``levels.PACKAGE_LEVELS``: the MIL interpreter anywhere, CoreML on macOS).
    A component (or its parity file) that failed its hash is not executed: its bytes are not the
    ones that were validated, and a corrupt package may not even load."""
    from .levels import PACKAGE_LEVELS
    from .validation import integer_outputs_from_records, tolerance_from_records

    levels = [level for level in PACKAGE_LEVELS if level.available()[0]]

    parity_files = {p["name"]: registry.member(entry, p["path"]) for p in entry.get("parity", [])}
    problems, results = [], []
    records = entry.get("validation", [])
    for comp in entry.get("components", []):
        name = comp["name"]
        package = registry.member(entry, comp["path"])
        if name in failed_hash:
            continue  # reported by the hash check
        if name not in parity_files:  # never a silent skip: nothing to execute is a problem
            problems.append(Problem(entry["id"], "component", name, "no parity inputs recorded for this component: it cannot be executed"))
            continue
        if not package.exists() or not parity_files[name].exists():
            continue  # already reported as missing by the hash check
        precision = entry.get("variant", {}).get("precision", "fp32")
        for level in levels:
            tolerance = tolerance_from_records(records, name, level.name) or tolerance_from_records(records, name, "reference")
            if tolerance is None:
                problems.append(Problem(entry["id"], "component", name, f"no recorded {level.name} threshold to check against"))
                continue
            integers = integer_outputs_from_records(records, name, level.name)
            progress(f"{entry['id']}: executing {name} at level {level.name}")
            for check in level.execute(name, package, parity_files[name], tolerance, integer_outputs=integers, precision=precision):
                results.append({"export": entry["id"], **check.record()})
                if check.status != "passed":
                    detail = check.reason or f"{check.metric} {check.value:.3g} vs threshold {check.threshold:.3g}"
                    problems.append(Problem(entry["id"], "component", name, f"executed package fails parity at {level.name}: {detail}"))
    return problems, results


def verify(registry: Registry, key: str = "", execute: bool = False, progress: Progress = _quiet,
           checkpoint: str | None = None, default_checkpoint: Callable[[str], str] = lambda model: "") -> tuple[list[dict[str, Any]], list[Problem], list[dict[str, Any]]]:
    """Verify the exports ``key`` selects (of ``checkpoint`` if given; an entry naming none is of
    ``default_checkpoint(its model)``)."""
    from .registry import entry_checkpoint

    entries = list(registry.find(key))
    if checkpoint is not None:
        entries = [e for e in entries if entry_checkpoint(e, default_checkpoint(e["model"])) == checkpoint]
    problems: list[Problem] = []
    executed: list[dict[str, Any]] = []
    for entry in entries:
        found = verify_entry(registry, entry, progress)
        problems.extend(found)
        if execute:
            failed_hash = {p.name for p in found if p.kind in ("component", "parity")}
            more, results = execute_entry(registry, entry, failed_hash, progress)
            problems.extend(more)
            executed.extend(results)
    return entries, problems, executed
