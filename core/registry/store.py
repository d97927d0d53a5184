"""registry.toml: the record of every package zoo produced.

Reads never modify the file. Writes take an exclusive file lock
(``registry.toml.lock`` beside it), re-read the file under the lock, append, and
replace the file atomically (temporary file, fsync, rename), so concurrent
exports never lose an entry and a crash never leaves half a file. A registry
that does not parse is refused and never overwritten. A registry that is a
symbolic link is read and written through it: its target is the file replaced,
and the lock lies beside the target. Anything but a regular file (a FIFO, a
device) is refused before it is opened.

Every write is checked before it replaces the file: the new text is parsed back
(by ``tomllib``, not the library that wrote it) and must equal exactly what was
meant: the previous content with the one entry added or removed. A shape of file
that would not round-trip (an inline ``exports = []`` left by hand or by a
removal of the last entry, an inline array of tables) is rewritten as an array
of tables first; anything still wrong is refused with the file left as it was.

Reads parse with ``tomli`` (tomllib's parser, compiled; ~30 times faster than
tomlkit on a large registry) and keep the result while the file's size, mtime and
inode are unchanged; tomlkit is used only to write, so comments survive. What
reads return is shared with that kept parse: callers must not modify it.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import tomlkit
from filelock import FileLock, Timeout
from tomlkit.exceptions import TOMLKitError

try:  # tomli's compiled wheels parse 2.3x faster than the standard library's tomllib (50 MB: 4.2 vs 9.5 s)
    import tomli as tomllib
except ModuleNotFoundError:  # pragma: no cover - the same parser, pure Python
    import tomllib  # type: ignore[no-redef]

from .entry import ExportEntry, entry_problem
from .header import HEADER

SCHEMA_VERSION = 1
ENV_VAR = "ZOO_REGISTRY"
DEFAULT_PATH = "registry.toml"


class RegistryError(RuntimeError):
    """The registry file cannot be used (does not parse, wrong schema, a broken entry)."""


def default_registry_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def new_document() -> tomlkit.TOMLDocument:
    doc = tomlkit.document()
    for line in HEADER.splitlines():
        doc.add(tomlkit.comment(line) if line.strip() else tomlkit.comment(""))
    doc.add(tomlkit.nl())
    doc["schema"] = SCHEMA_VERSION
    return doc


#: registries this large are parsed once per content and kept as JSON in zoo's cache (a 50 MB
#: registry: TOML parse 4.2 s, its JSON index 0.6 s)
INDEX_MIN_BYTES = 1 << 20
INDEX_KEEP = 4
#: how long a writer waits for the registry lock before saying who holds it
LOCK_TIMEOUT = 600
_REFUSE = "fix or move it away — zoo will not overwrite it"


def _same(a: Any, b: Any) -> bool:
    """Equal as data (NaN equal to NaN: a recorded non-finite value reads back as written)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


class Registry:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_registry_path()
        self._filelock: FileLock | None = None
        self._parsed: tuple[tuple[int, int, int, int], dict[str, Any]] | None = None

    @property
    def target(self) -> Path:
        """The file a write replaces: the registry path with symbolic links resolved."""
        return Path(os.path.realpath(self.path))

    @property
    def root(self) -> Path:
        return self.target.parent

    @property
    def lock_path(self) -> Path:
        return Path(str(self.target) + ".lock")

    def _lock(self) -> FileLock:
        """One lock object per registry (re-entrant: ``zoo rm`` holds it while it deletes files
        and then drops the entries)."""
        if self._filelock is None:
            self._filelock = FileLock(str(self.lock_path), timeout=LOCK_TIMEOUT)
        return self._filelock

    def check_writable(self) -> None:
        """Refuse, before any work, a registry zoo could not write: its lock or file not a regular
        file, or its folder missing and not creatable."""
        lock = self.lock_path
        if lock.exists() and (lock.is_symlink() or not lock.is_file()):
            raise RegistryError(
                f"the registry lock {lock} is not a regular file; remove it (zoo creates it as an empty file)"
            )
        self._stat()

    def _stat(self) -> os.stat_result | None:
        """The registry's stat (links followed); None when it does not exist. Anything but a
        regular file is refused without opening it (a FIFO would block every command)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None  # none yet (a link to a file not made yet: the first write makes its target)
        if not stat.S_ISREG(st.st_mode):
            kind = (
                "a directory"
                if stat.S_ISDIR(st.st_mode)
                else "a FIFO"
                if stat.S_ISFIFO(st.st_mode)
                else "not a regular file"
            )
            raise RegistryError(f"{self.path} is {kind}; the registry must be a regular file")
        return st

    def _load(self) -> tuple[str | None, dict[str, Any]]:
        """(the file's text, its validated data); a missing file is an empty registry."""
        st = self._stat()
        if st is None:
            return None, {"schema": SCHEMA_VERSION}
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise RegistryError(f"{self.path} cannot be read ({exc.strerror})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RegistryError(f"{self.path} is not UTF-8 text (byte {exc.start}); {_REFUSE}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(f"{self.path} is not valid TOML ({exc}); {_REFUSE}") from None
        self._validate(data)
        return text, data

    def _validate(self, data: dict[str, Any]) -> None:
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise RegistryError(
                f"{self.path}: schema {schema!r} is not supported (this zoo writes schema {SCHEMA_VERSION})"
            )
        exports = data.get("exports", [])
        if not isinstance(exports, list) or any(not isinstance(e, dict) for e in exports):
            raise RegistryError(f"{self.path}: 'exports' must be an array of tables; {_REFUSE}")
        seen: set[str] = set()
        for index, entry in enumerate(exports):
            problem = entry_problem(entry)
            name = entry.get("id") if isinstance(entry.get("id"), str) else f"#{index + 1}"
            if problem is None and entry["id"] in seen:
                problem = "its id is used by an earlier entry too"
            if problem:
                raise RegistryError(f"{self.path}: export {name}: {problem}; {_REFUSE}")
            seen.add(entry["id"])

    def read(self) -> dict[str, Any]:
        """The registry as plain data, checked (schema, every entry); a missing file reads as an
        empty registry. Parsed again only when the file changed (size, mtime, inode, device)."""
        st = self._stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else (0, 0, -1, 0)
        if self._parsed is None or self._parsed[0] != key:
            data = self._indexed() if st is not None and st.st_size >= INDEX_MIN_BYTES else self._load()[1]
            self._parsed = (key, data)
        return self._parsed[1]

    def _indexed(self) -> dict[str, Any]:
        """A large registry's data from zoo's cache (``<cache>/registry-index/<sha256 of the file>``,
        JSON: its own sha256 checked on every read), else parsed and indexed for the next command.
        The file is read and hashed each time (0.1 s for 50 MB); only the TOML parse is saved."""
        import hashlib

        from ..util.cachedir import default_cache_root

        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise RegistryError(f"{self.path} cannot be read ({exc.strerror})") from None
        digest = hashlib.sha256(raw).hexdigest()
        folder = default_cache_root() / "registry-index"
        index = folder / f"{digest}.json"
        try:
            head, body = index.read_bytes().split(b"\n", 1)
            meta = json.loads(head)
            if meta == {"registry_sha256": digest, "data_sha256": hashlib.sha256(body).hexdigest()}:
                data = json.loads(body)
                self._validate(data)
                return data
        except (OSError, ValueError, RegistryError):
            pass  # no index, or one that fails its hash: parse the file
        _, data = self._load()
        try:
            body = json.dumps(data, allow_nan=True).encode()
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{digest}.{os.getpid()}.tmp"
            tmp.write_bytes(
                json.dumps({"registry_sha256": digest, "data_sha256": hashlib.sha256(body).hexdigest()}).encode()
                + b"\n"
                + body
            )
            os.replace(tmp, index)
            for old in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)[:-INDEX_KEEP]:
                old.unlink(missing_ok=True)
        except (OSError, TypeError, ValueError):
            pass  # values JSON cannot hold (a hand-written date), or no room: parsed again next time
        return data

    def exports(self) -> list[ExportEntry]:
        """The entries, typed (each table passed ``entry_problem`` when the file was read)."""
        return [ExportEntry.from_table(e) for e in self.read().get("exports", [])]

    def find(self, key: str) -> Iterator[ExportEntry]:
        """Exports whose id or model is ``key`` (all exports for ``key=''``)."""
        for entry in self.exports():
            if not key or entry.id == key or entry.model == key:
                yield entry

    def latest_valid(
        self, model: str, checkpoint: str | None = None, default_checkpoint: str = "", variant: str | None = None
    ) -> ExportEntry | None:
        """The newest valid export of ``model`` (of ``checkpoint`` and ``variant`` if given; an entry
        that names no checkpoint is of ``default_checkpoint``)."""
        valid = [e for e in self.exports() if e.model == model and e.valid]
        if checkpoint is not None:
            valid = [e for e in valid if e.checkpoint(default_checkpoint) == checkpoint]
        if variant:
            valid = [e for e in valid if e.variant_name == variant]
        return max(valid, key=lambda e: e.created_at, default=None)

    def export_dir(self, entry: ExportEntry) -> Path:
        """The entry's directory, checked to be one zoo placed (``exportdir.locate``: <out>/<id>
        with zoo's marker naming the id); RegistryError naming the entry otherwise."""
        from .exportdir import NotAnExport, locate

        try:
            return locate(self, entry)
        except NotAnExport as exc:
            raise RegistryError(f"{self.path}: {exc}") from None

    def member(self, entry: ExportEntry, relative: str) -> Path:
        """A path an entry lists (component, constant, parity file), which must lie inside that
        export's directory — symbolic links resolved — or it is refused naming the entry."""
        root = self.export_dir(entry)
        path = root / relative
        inside = root.resolve()
        resolved = path.resolve()
        if Path(relative).is_absolute() or (resolved != inside and inside not in resolved.parents):
            raise RegistryError(f"{self.path}: export {entry.id}: path {relative!r} leads outside its directory {root}")
        return path

    def relative(self, path: Path) -> str:
        path = path.resolve()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def identical(self, inputs_sha256: str, exports: list[ExportEntry] | None = None) -> ExportEntry | None:
        """The newest valid export made from the same inputs, if any."""
        same = [
            e
            for e in (self.exports() if exports is None else exports)
            if inputs_sha256 and e.inputs_sha256 == inputs_sha256 and e.valid
        ]
        return max(same, key=lambda e: e.created_at, default=None)

    def _document(self) -> tuple[tomlkit.TOMLDocument, dict[str, Any]]:
        """(the file as a tomlkit document to edit, the same text as checked data); under the lock."""
        text, data = self._load()
        if text is None:
            return new_document(), data
        try:
            return tomlkit.parse(text), data
        except TOMLKitError as exc:  # valid for tomllib, not for tomlkit: never rewritten
            raise RegistryError(f"{self.path} cannot be edited ({exc}); {_REFUSE}") from exc

    @staticmethod
    def _set_exports(doc: tomlkit.TOMLDocument, exports: list[dict[str, Any]]) -> None:
        """Make ``doc["exports"]`` an array of tables holding ``exports`` (none: the key goes).
        tomlkit appends a table to an inline array as invalid TOML, and leaves ``exports = []``
        when the last table of an array is removed, so any other shape is rebuilt."""
        current = doc.get("exports")
        if isinstance(current, tomlkit.items.AoT):
            had = [_plain(a) for a in current]
            if len(had) <= len(exports) and all(_same(a, b) for a, b in zip(had, exports)):  # appended
                for entry in exports[len(had) :]:
                    current.append(tomlkit.item(entry))
                return
            if [a.get("id") for a in had] == [e["id"] for e in exports]:  # an entry changed (an eval row added)
                for index, (a, b) in enumerate(zip(had, exports)):
                    if not _same(a, b):
                        current[index] = tomlkit.item(b)
                return
            keep = {e["id"] for e in exports}
            if exports and _same([a for a in had if a.get("id") in keep], exports):  # removed: the rest untouched
                for index in reversed(range(len(had))):
                    if had[index].get("id") not in keep:
                        del current[index]
                return
        if "exports" in doc:
            del doc["exports"]
        if exports:
            table = tomlkit.aot()
            for entry in exports:
                table.append(tomlkit.item(entry))
            doc.add(tomlkit.nl())
            doc["exports"] = table

    def add(
        self, entry: "ExportEntry | dict[str, Any]", before_write: Any = None, reuse_identical: bool = False
    ) -> ExportEntry | None:
        """Append one export atomically under the lock.

        ``before_write`` (optional, no arguments) runs under the lock after the
        registry parsed and before it is replaced — used to move the export into
        place only once the registry is known to be writable. With
        ``reuse_identical``, an export registered meanwhile from the same inputs is
        returned instead and nothing is written (None: the entry was added).
        """
        if isinstance(entry, ExportEntry):
            entry = entry.record()
        self.check_writable()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            doc, data = self._document()
            exports = data.get("exports", [])
            if reuse_identical:
                existing = self.identical(entry.get("inputs_sha256", ""), [ExportEntry.from_table(e) for e in exports])
                if existing is not None:
                    return existing
            if any(e["id"] == entry["id"] for e in exports):
                raise RegistryError(f"{self.path}: an export with id {entry['id']!r} already exists")
            text = self._render(doc, data, exports + [_plain(tomlkit.item(entry))])
            if before_write is not None:
                before_write()
            self._write(text)
        return None

    def add_all(self, choose: Callable[[list[ExportEntry]], list[dict[str, Any]]]) -> int:
        """Append the records ``choose(current entries)`` returns, atomically under the lock, in one
        write (``zoo registry merge``: ``choose`` sees the registry as it is once locked and may
        raise to write nothing); an id already present raises RegistryError. Returns how many."""
        self.check_writable()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            doc, data = self._document()
            exports = data.get("exports", [])
            records = choose([ExportEntry.from_table(e) for e in exports])
            taken = {e["id"] for e in exports}
            for record in records:
                if record["id"] in taken:
                    raise RegistryError(f"{self.path}: an export with id {record['id']!r} already exists")
                taken.add(record["id"])
            if records:
                self._write(self._render(doc, data, exports + [_plain(tomlkit.item(r)) for r in records]))
        return len(records)

    def remove(
        self, export_ids: list[str], handle: Callable[[list[ExportEntry]], Iterable[str]] | None = None
    ) -> list[ExportEntry]:
        """Drop the entries ``export_ids`` atomically under the lock; returns them (an unknown id
        raises RegistryError and nothing is written). ``handle(entries)``, run under the lock
        before the registry is rewritten, returns the ids whose entries may go (``zoo rm``
        deletes their files there first and keeps the entries it could not handle)."""
        self.check_writable()
        with self._locked():
            doc, data = self._document()
            exports = data.get("exports", [])
            known = {e["id"]: e for e in exports}
            unknown = [i for i in export_ids if i not in known]
            if unknown:
                raise RegistryError(f"{self.path}: no export {', '.join(map(repr, unknown))}")
            chosen = [ExportEntry.from_table(known[i]) for i in dict.fromkeys(export_ids)]
            drop = set(known) & set(handle(chosen) if handle is not None else [e.id for e in chosen])
            if drop:
                self._write(self._render(doc, data, [e for e in exports if e["id"] not in drop]))
        return [e for e in chosen if e.id in drop]

    def add_eval(self, export_id: str, row: dict[str, Any]) -> None:
        """Append one ``[[exports.eval]]`` row to an export's entry, atomically under the lock."""
        self.check_writable()
        with self._locked():
            doc, data = self._document()
            exports = data.get("exports", [])
            index = next((i for i, e in enumerate(exports) if e["id"] == export_id), None)
            if index is None:
                raise RegistryError(f"{self.path}: no export {export_id!r}")
            updated = dict(exports[index])
            updated["eval"] = list(updated.get("eval", [])) + [_plain(tomlkit.item(row))]
            self._write(self._render(doc, data, exports[:index] + [updated] + exports[index + 1 :]))

    def _locked(self) -> Any:
        lock = self._lock()

        class _Held:
            def __enter__(inner) -> None:
                try:
                    lock.acquire()
                except Timeout:
                    raise RegistryError(
                        f"{self.path}: another zoo has held the lock {self.lock_path} for {LOCK_TIMEOUT} s; "
                        "if no zoo is running, delete the lock file"
                    ) from None
                except OSError as exc:
                    raise RegistryError(
                        f"{self.path}: cannot take the lock {self.lock_path} ({exc.strerror})"
                    ) from None

            def __exit__(inner, *exc: Any) -> None:
                lock.release()

        return _Held()

    def _render(self, doc: tomlkit.TOMLDocument, data: dict[str, Any], exports: list[dict[str, Any]]) -> str:
        """The file's new text with ``exports`` as its entries, checked to parse (by tomllib) to
        exactly the previous data with those entries: a write is refused, not made, otherwise."""
        self._set_exports(doc, exports)
        text = tomlkit.dumps(doc)
        meant = {**{k: v for k, v in data.items() if k != "exports"}, **({"exports": exports} if exports else {})}
        try:
            got = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(
                f"{self.path}: refusing to write: the updated registry would not parse ({exc}); the file is unchanged"
            ) from None
        if not _same(got, meant):
            raise RegistryError(
                f"{self.path}: refusing to write: the updated registry would not read back as meant; the file is "
                "unchanged"
            )
        self._validate(got)
        return text

    def _write(self, text: str) -> None:
        target = self.target
        # keep the file's mode (a new file gets 0666 less the umask, not mkstemp's 0600)
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            from ..util.files import current_umask

            mode = 0o666 & ~current_umask()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._parsed = None
