"""`zoo verify`: re-hash what the registry says was exported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

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


def verify_entry(registry: Registry, entry: dict[str, Any]) -> list[Problem]:
    root = registry.export_dir(entry)
    problems: list[Problem] = []
    if not root.is_dir():
        return [Problem(entry["id"], "export", entry["id"], f"export directory {root} is missing")]
    items: Iterable[tuple[str, dict[str, Any]]] = [("component", c) for c in entry.get("components", [])] + [
        ("constant", c) for c in entry.get("constants", [])
    ]
    for kind, item in items:
        path = root / item["path"]
        if not path.exists():
            problems.append(Problem(entry["id"], kind, item["name"], f"{path} is missing"))
            continue
        digest = tree_sha256(path)
        if digest != item["sha256"]:
            problems.append(Problem(entry["id"], kind, item["name"], f"sha256 {digest[:16]}… differs from registered {item['sha256'][:16]}…"))
    return problems


def verify(registry: Registry, key: str = "") -> tuple[list[dict[str, Any]], list[Problem]]:
    entries = list(registry.find(key))
    problems = [p for entry in entries for p in verify_entry(registry, entry)]
    return entries, problems
