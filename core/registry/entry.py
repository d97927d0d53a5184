"""One registry entry: ``ExportEntry`` (typed; what every read of the registry returns and what the
pipeline writes), its listed files (``Item``), and the check a table must pass to be read at all
(``entry_problem``: required keys and types, item paths that stay inside the export).

May import: nothing of zoo (plain data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

#: what every entry must carry, and of which type (schema 1)
_REQUIRED = {
    "id": str,
    "model": str,
    "status": str,
    "created_at": str,
    "path": str,
    "variant": dict,
    "components": list,
}
_ITEM_LISTS = ("components", "constants", "parity")
_ITEM_KEYS = {"name": str, "path": str, "sha256": str}


def entry_problem(entry: dict[str, Any]) -> str | None:
    """What is wrong with one ``[[exports]]`` table, or None: required keys and their types, and
    relative item paths that stay inside the export (``..`` and absolute paths are refused)."""
    for key, kind in _REQUIRED.items():
        if key not in entry:
            return f"missing key {key!r}"
        if not isinstance(entry[key], kind):
            return f"{key!r} must be a {kind.__name__}, not {type(entry[key]).__name__}"
    if not isinstance(entry["variant"].get("name"), str):
        return "variant.name is missing"
    if "out" in entry and not isinstance(entry["out"], str):
        return "'out' must be a string"
    for listing in _ITEM_LISTS:
        items = entry.get(listing, [])
        if not isinstance(items, list):
            return f"{listing!r} must be an array of tables"
        for item in items:
            if not isinstance(item, dict):
                return f"{listing!r} must be an array of tables"
            for key, kind in _ITEM_KEYS.items():
                if not isinstance(item.get(key), kind):
                    return f"a {listing} item lacks a {key!r} string"
            for rel in [item["path"]] + [
                str(Path(item["path"]) / f) for f in item.get("files", []) if isinstance(f, str)
            ]:
                if Path(rel).is_absolute() or ".." in Path(rel).parts:
                    return f"{listing} {item['name']!r}: path {rel!r} leads outside the export"
            if "files" in item and not (
                isinstance(item["files"], list) and all(isinstance(f, str) for f in item["files"])
            ):
                return f"{listing} {item['name']!r}: files must be an array of strings"
    for record in entry.get("validation", []):
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("level"), str)
            or not isinstance(record.get("status"), str)
        ):
            return "a validation record lacks its level or status"
    evals = entry.get("eval", [])
    if not isinstance(evals, list) or any(
        not isinstance(r, dict) or not isinstance(r.get("asr_sha256"), str) for r in evals
    ):
        return "'eval' must be an array of tables, each naming its recogniser (asr_sha256)"
    resources = entry.get("resources", {})
    if not isinstance(resources, dict) or any(
        not isinstance(v, (int, float)) or isinstance(v, bool) for v in resources.values()
    ):
        return "'resources' must be a table of numbers"
    return None


@dataclass(frozen=True)
class Item:
    """One file or package an entry lists (``[[exports.components]]``, ``constants``, ``parity``)."""

    name: str
    path: str  # relative to the export directory
    sha256: str
    bytes: int
    functions: tuple[str, ...] | None = None  # components only
    #: the files of a package (relative to it), so that a missing one is named (components only)
    files: tuple[str, ...] | None = None
    #: what compression did to the package (compressed variants, components only)
    compression: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """The TOML table (no empty optional values)."""
        table = {k: v for k, v in asdict(self).items() if v is not None}
        for key in ("functions", "files"):
            if getattr(self, key) is not None:
                table[key] = list(getattr(self, key))
        return table

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> "Item":
        """An item of an entry ``entry_problem`` accepted (name, path and sha256 checked there)."""
        functions, files = table.get("functions"), table.get("files")
        return cls(
            str(table["name"]),
            str(table["path"]),
            str(table["sha256"]),
            int(table.get("bytes", 0)),
            tuple(functions) if functions is not None else None,
            tuple(files) if files is not None else None,
            dict(table["compression"]) if isinstance(table.get("compression"), Mapping) else None,
        )


@dataclass
class ExportEntry:
    """One ``[[exports]]`` table, as the pipeline writes it (the fields HEADER documents)."""

    id: str
    model: str
    validation_level: str
    created_at: str
    path: str
    plugin: dict[str, str]
    variant: dict[str, Any]
    weights: dict[str, Any]
    tools: dict[str, str]
    components: list[Item]
    constants: list[Item] = field(default_factory=list)
    parity: list[Item] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    status: str = "valid"
    #: the output root the export was placed in (relative to the registry's folder when below it)
    out: str = ""
    #: sha256 of everything the export was made from (model, plugin and core sources, variant,
    #: weights, tool versions): an identical export is reused instead of registered again
    inputs_sha256: str = ""
    #: one row per `zoo eval` of the export (HEADER: [[exports.eval]])
    eval: list[dict[str, Any]] = field(default_factory=list)
    #: what the export cost: peak_rss_mb (its largest process) and seconds (HEADER: resources); a
    #: matrix's Ray tasks ask for memory by it
    resources: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> "ExportEntry":
        """The typed entry of a table ``entry_problem`` accepted (what every read returns); keys a
        hand-written entry may lack take their defaults."""

        def mapping(key: str) -> dict[str, Any]:
            value = table.get(key)
            return dict(value) if isinstance(value, Mapping) else {}

        return cls(
            id=table["id"],
            model=table["model"],
            validation_level=str(table.get("validation_level") or ""),
            created_at=table["created_at"],
            path=table["path"],
            plugin=mapping("plugin"),
            variant=mapping("variant"),
            weights=mapping("weights"),
            tools=mapping("tools"),
            components=[Item.from_table(i) for i in table.get("components", [])],
            constants=[Item.from_table(i) for i in table.get("constants", [])],
            parity=[Item.from_table(i) for i in table.get("parity", [])],
            validation=[dict(r) for r in table.get("validation", [])],
            status=table.get("status", "valid"),
            out=str(table.get("out") or ""),
            inputs_sha256=str(table.get("inputs_sha256") or ""),
            eval=[dict(r) for r in table.get("eval", [])],
            resources=mapping("resources"),
        )

    @property
    def variant_name(self) -> str:
        return str(self.variant.get("name", ""))

    @property
    def precision(self) -> str:
        return str(self.variant.get("precision", "fp32"))

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    def checkpoint(self, default: str = "") -> str:
        """The checkpoint the export was made from (its variant's options; ``default`` if none)."""
        options = self.variant.get("options") or {}
        return str(options.get("checkpoint") or default) if isinstance(options, Mapping) else default

    @property
    def random_weights(self) -> bool:
        """Made with seeded random weights (nothing it says can be heard as speech)."""
        return self.weights.get("kind") == "random"

    def record(self) -> dict[str, Any]:
        """The TOML table: keys in HEADER's order, no empty optional values."""

        order = (
            "id",
            "model",
            "status",
            "validation_level",
            "created_at",
            "path",
            "out",
            "inputs_sha256",
            "plugin",
            "variant",
            "weights",
            "tools",
        )
        table: dict[str, Any] = {k: getattr(self, k) for k in order if k != "out" or self.out}
        if self.resources:
            table["resources"] = dict(self.resources)
        table["components"] = [i.record() for i in self.components]
        table["constants"] = [i.record() for i in self.constants]
        table["parity"] = [i.record() for i in self.parity]
        table["validation"] = list(self.validation)
        if self.eval:
            table["eval"] = list(self.eval)
        problem = entry_problem(table)
        if problem:
            raise ValueError(f"export {self.id}: {problem}")
        return table
