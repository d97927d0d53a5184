"""registry.toml: the record of every package zoo produced.

Reads never modify the file. Writes take an exclusive file lock
(``registry.toml.lock`` beside it), re-read the file under the lock, append, and
replace the file atomically (temporary file, fsync, rename), so concurrent
exports never lose an entry and a crash never leaves half a file. A registry
that does not parse is refused and never overwritten.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import tomlkit
from filelock import FileLock
from tomlkit.exceptions import TOMLKitError

SCHEMA_VERSION = 1
ENV_VAR = "ZOO_REGISTRY"
DEFAULT_PATH = "registry.toml"

HEADER = """\
zoo registry: every CoreML package zoo produced, with hashes and validation.
Written by `zoo export` (atomically, under registry.toml.lock); read by
`zoo list`, `zoo verify`, `zoo info` and `zoo run --backend mil|coreml`.
Edit by hand only while no export is running.

schema                       format version of this file
[[exports]]                  one table per successful export
  id                         unique export id: <model>-<variant>-<utc time>-<random>
  model                      model name (see `zoo list`)
  status                     "valid": every required validation level passed
  validation_level           highest level reached in order reference < mil < coreml
  created_at                 UTC time the export was registered
  path                       export directory, relative to this file when below it
  inputs_sha256              sha256 of what the export was made from (model, plugin and
                             core sources, variant, weights, tool versions): `zoo export`
                             reuses a valid export with the same value instead of adding one
  [exports.plugin]           name, version and source sha256 of the plugin that made it
  [exports.variant]          name, precision (fp16|fp32), target (iOS17, ...), options
                             (shapes, buckets and other plugin-specific settings)
  [exports.weights]          kind = "hub" (repo, revision), "local" (path, sha256) or
                             "random" (seed; recorded as random(seed=N) in `describe`);
                             files = sha256 of every weights file read
  [exports.tools]            python, zoo, torch, coremltools, numpy versions
  [[exports.components]]     one per CoreML package:
    name, path               component name; package path relative to the export dir
    functions                the package's functions ("main" for a plain package)
    sha256, bytes            sha256 over the package tree (sorted relative paths,
                             sizes and bytes) and its total size
    files                    the package's files, relative to it (a missing one is named)
    compression              compressed variants: mode (w8, p6, p4), compressed_weights,
                             worst_weight_snr_db and predicted_snr_db (the weights' own SNR
                             after decompression, and the output SNR it predicts), kept
                             (weights the plugin keeps uncompressed), left (weights whose
                             shape the mode cannot take, left as they were), bytes_before/after
  [[exports.constants]]      name, path, sha256, bytes of each constants file
  [[exports.parity]]         per component: the parity inputs, torch outputs and initial
                             states (safetensors) that `zoo verify --execute` re-runs
  [[exports.validation]]     one record per level and component (and metric):
    level                    reference (traceable vs upstream, torch), mil (saved package
                             run by zoo's MIL interpreter), coreml (CoreML, macOS only)
    component, metric        what was compared and how: float64_rel / float64_spectral
                             (port and upstream both in float64), rel, cosine_min,
                             spectral_max (audio judged by its magnitude spectrogram), snr_db_min
                             (compressed packages: output SNR in dB),
                             <output>:mismatches (integer outputs after the loop's rounding),
                             max_abs; "execute" when the package could not be executed;
                             "loop:<name>": a whole utterance of the run loop vs upstream,
                             with what was compared in `detail` (README: "Validation")
    value, threshold         the measured worst case and the bound it must meet
    basis                    how a bound measured at export time was derived, with the
                             measurement (e.g. "rel ≤ 16 × upstream fp32 error 6.3e-07")
    worst                    worst max_abs, rel and cosine over all compared outputs
    status                   passed | failed | skipped
    reason                   why a level was skipped or failed; first non-finite op
"""


class RegistryError(RuntimeError):
    """The registry file cannot be used (does not parse, wrong schema, a broken entry)."""


#: what every entry must carry, and of which type (schema 1)
_REQUIRED = {"id": str, "model": str, "status": str, "created_at": str, "path": str, "variant": dict, "components": list}
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
            for rel in [item["path"]] + [str(Path(item["path"]) / f) for f in item.get("files", []) if isinstance(f, str)]:
                if Path(rel).is_absolute() or ".." in Path(rel).parts:
                    return f"{listing} {item['name']!r}: path {rel!r} leads outside the export"
            if "files" in item and not (isinstance(item["files"], list) and all(isinstance(f, str) for f in item["files"])):
                return f"{listing} {item['name']!r}: files must be an array of strings"
    for record in entry.get("validation", []):
        if not isinstance(record, dict) or not isinstance(record.get("level"), str) or not isinstance(record.get("status"), str):
            return "a validation record lacks its level or status"
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


def entry_checkpoint(entry: Mapping[str, Any], default: str = "") -> str:
    """The checkpoint an export was made from (its variant's options; ``default`` if none)."""
    options = (entry.get("variant") or {}).get("options") or {}
    return str(options.get("checkpoint") or default) if isinstance(options, Mapping) else default


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
    #: sha256 of everything the export was made from (model, plugin and core sources, variant,
    #: weights, tool versions): an identical export is reused instead of registered again
    inputs_sha256: str = ""

    def record(self) -> dict[str, Any]:
        """The TOML table: keys in HEADER's order, no empty optional values."""
        def item(i: Item) -> dict[str, Any]:
            d = {k: v for k, v in asdict(i).items() if v is not None}
            for key in ("functions", "files"):
                if getattr(i, key) is not None:
                    d[key] = list(getattr(i, key))
            return d

        order = ("id", "model", "status", "validation_level", "created_at", "path", "inputs_sha256", "plugin", "variant", "weights", "tools")
        table: dict[str, Any] = {k: getattr(self, k) for k in order}
        table["components"] = [item(i) for i in self.components]
        table["constants"] = [item(i) for i in self.constants]
        table["parity"] = [item(i) for i in self.parity]
        table["validation"] = list(self.validation)
        problem = entry_problem(table)
        if problem:
            raise ValueError(f"export {self.id}: {problem}")
        return table


def default_registry_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def new_document() -> tomlkit.TOMLDocument:
    doc = tomlkit.document()
    for line in HEADER.splitlines():
        doc.add(tomlkit.comment(line) if line.strip() else tomlkit.comment(""))
    doc.add(tomlkit.nl())
    doc["schema"] = SCHEMA_VERSION
    return doc


class Registry:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_registry_path()

    @property
    def root(self) -> Path:
        return self.path.resolve().parent

    def _lock(self) -> FileLock:
        return FileLock(str(self.path) + ".lock", timeout=600)

    def read(self) -> tomlkit.TOMLDocument:
        """Parse the registry; a missing file reads as an empty registry."""
        if not self.path.exists():
            return new_document()
        refuse = "fix or move it away — zoo will not overwrite it"
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RegistryError(f"{self.path} is not UTF-8 text (byte {exc.start}); {refuse}") from None
        try:
            doc = tomlkit.parse(text)
        except TOMLKitError as exc:
            raise RegistryError(f"{self.path} is not valid TOML ({exc}); {refuse}") from exc
        schema = doc.get("schema")
        if schema != SCHEMA_VERSION:
            raise RegistryError(f"{self.path}: schema {schema!r} is not supported (this zoo writes schema {SCHEMA_VERSION})")
        exports = doc.get("exports", [])
        if not isinstance(exports, list) or any(not isinstance(e, dict) for e in exports):
            raise RegistryError(f"{self.path}: 'exports' must be an array of tables; {refuse}")
        seen: set[str] = set()
        for index, entry in enumerate(exports):
            problem = entry_problem(entry)
            name = entry.get("id") if isinstance(entry.get("id"), str) else f"#{index + 1}"
            if problem is None and entry["id"] in seen:
                problem = "its id is used by an earlier entry too"
            if problem:
                raise RegistryError(f"{self.path}: export {name}: {problem}; {refuse}")
            seen.add(entry["id"])
        return doc

    def exports(self) -> list[dict[str, Any]]:
        return [e.unwrap() if hasattr(e, "unwrap") else dict(e) for e in self.read().get("exports", [])]

    def find(self, key: str) -> Iterator[dict[str, Any]]:
        """Exports whose id or model is ``key`` (all exports for ``key=''``)."""
        for entry in self.exports():
            if not key or entry["id"] == key or entry["model"] == key:
                yield entry

    def latest_valid(self, model: str, checkpoint: str | None = None, default_checkpoint: str = "", variant: str | None = None) -> dict[str, Any] | None:
        """The newest valid export of ``model`` (of ``checkpoint`` and ``variant`` if given; an entry
        that names no checkpoint is of ``default_checkpoint``)."""
        valid = [e for e in self.exports() if e["model"] == model and e.get("status") == "valid"]
        if checkpoint is not None:
            valid = [e for e in valid if entry_checkpoint(e, default_checkpoint) == checkpoint]
        if variant:
            valid = [e for e in valid if e["variant"]["name"] == variant]
        return max(valid, key=lambda e: e["created_at"], default=None)

    def export_dir(self, entry: dict[str, Any]) -> Path:
        path = Path(entry["path"])
        return path if path.is_absolute() else self.root / path

    def member(self, entry: dict[str, Any], relative: str) -> Path:
        """A path an entry lists (component, constant, parity file), which must lie inside that
        export's directory — symbolic links resolved — or it is refused naming the entry."""
        root = self.export_dir(entry)
        path = root / relative
        inside = root.resolve()
        resolved = path.resolve()
        if Path(relative).is_absolute() or (resolved != inside and inside not in resolved.parents):
            raise RegistryError(f"{self.path}: export {entry['id']}: path {relative!r} leads outside its directory {root}")
        return path

    def relative(self, path: Path) -> str:
        path = path.resolve()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def identical(self, inputs_sha256: str, exports: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """The newest valid export made from the same inputs, if any."""
        same = [e for e in (self.exports() if exports is None else exports) if inputs_sha256 and e.get("inputs_sha256") == inputs_sha256 and e.get("status") == "valid"]
        return max(same, key=lambda e: e["created_at"], default=None)

    def add(self, entry: "ExportEntry | dict[str, Any]", before_write: Any = None, reuse_identical: bool = False) -> dict[str, Any] | None:
        """Append one export atomically under the lock.

        ``before_write`` (optional, no arguments) runs under the lock after the
        registry parsed and before it is replaced — used to move the export into
        place only once the registry is known to be writable. With
        ``reuse_identical``, an export registered meanwhile from the same inputs is
        returned instead and nothing is written (None: the entry was added).
        """
        if isinstance(entry, ExportEntry):
            entry = entry.record()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            doc = self.read()
            if reuse_identical:
                existing = self.identical(entry.get("inputs_sha256", ""), [e.unwrap() if hasattr(e, "unwrap") else dict(e) for e in doc.get("exports", [])])
                if existing is not None:
                    return existing
            if any(e["id"] == entry["id"] for e in doc.get("exports", [])):
                raise RegistryError(f"{self.path}: an export with id {entry['id']!r} already exists")
            if "exports" not in doc:
                doc.add(tomlkit.nl())
                doc["exports"] = tomlkit.aot()
            doc["exports"].append(tomlkit.item(entry))
            text = tomlkit.dumps(doc)
            if before_write is not None:
                before_write()
            self._write(text)
        return None

    def remove(self, export_ids: list[str]) -> list[dict[str, Any]]:
        """Drop the entries ``export_ids`` atomically under the lock; returns them (an unknown id
        raises RegistryError and nothing is written)."""
        with self._lock():
            doc = self.read()
            exports = doc.get("exports", [])
            known = {e["id"]: i for i, e in enumerate(exports)}
            unknown = [i for i in export_ids if i not in known]
            if unknown:
                raise RegistryError(f"{self.path}: no export {', '.join(map(repr, unknown))}")
            removed = [exports[known[i]].unwrap() for i in export_ids]
            for index in sorted((known[i] for i in set(export_ids)), reverse=True):
                del exports[index]
            self._write(tomlkit.dumps(doc))
        return removed

    def _write(self, text: str) -> None:
        # keep the file's mode (a new file gets 0666 less the umask, not mkstemp's 0600)
        try:
            mode = self.path.stat().st_mode & 0o7777
        except FileNotFoundError:
            from .cache import current_umask

            mode = 0o666 & ~current_umask()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
