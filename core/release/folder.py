"""``zoo publish ID``: the export's packages and constants copied into a new folder with its
``manifest.json``, built aside and renamed into place (a reader never sees half a folder; a failure
leaves nothing). ``zoo verify DIR``: such a folder checked on its own, against its manifest only."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..plugin.errors import UsageError
from ..registry.entry import ExportEntry
from ..registry.owned import zoo_state
from ..registry.store import Registry
from ..registry.verify import verify_entry
from ..util.files import is_free_directory, new_directory
from ..util.hashing import file_sha256, tree_sha256
from . import manifest as mf
from .card import model_card
from .figures import draw
from .notices import gather

#: the model card's file name (what a hub shows)
CARD = "README.md"

#: the largest manifest ``zoo verify DIR`` reads (a folder's manifest is a few KB per package)
MAX_MANIFEST_BYTES = 16 << 20


class PublishError(ValueError):
    """An export that cannot be published, or a destination zoo will not write (named)."""


def default_dir(entry: ExportEntry) -> Path:
    return Path("published") / entry.id


def refuse_zoo_state(registry: Registry, dest: Path) -> None:
    """UsageError when ``dest`` is or lies in zoo's own state (``registry.owned``): a published folder
    is the user's, and ``zoo rm`` or a cache clean would delete it."""
    what, folder = zoo_state(registry, dest)
    if what:
        place = f"lies inside {what} ({folder})" if folder is not None else f"is {what}"
        raise UsageError(f"--dir {dest} {place}; publish outside zoo's own state")


def publish(
    registry: Registry,
    entry: ExportEntry,
    dest: Path,
    zoo_version: str,
    spec: Any = None,
    progress: Callable[[str], None] = print,
    describe_loop: Callable[[dict[str, Path]], Any] | None = None,
) -> dict[str, Any]:
    """Copy ``entry``'s packages and constants into ``dest`` (which must not exist, or be an empty
    directory, outside zoo's own state: else UsageError) with its model card (``README.md``; ``spec``: the
    model's ModelSpec, None when its plugin is not installed) and its manifest; the export is verified
    first and each copy checked against the registry's sha256. ``describe_loop(constants)``: the plugin's
    loop contract (a ``LoopContract`` or None) from the copied constants. Returns the manifest."""
    if entry.status != "valid":
        raise PublishError(f"export {entry.id} is not valid ({entry.status}); publish a valid export")
    dest = Path(dest)
    if not is_free_directory(dest):
        raise UsageError(f"--dir {dest} exists and is not an empty directory; zoo publishes into a new one")
    refuse_zoo_state(registry, dest)
    progress(f"verifying {entry.id}")
    problems = verify_entry(registry, entry)
    if problems:
        raise PublishError(f"export {entry.id} fails `zoo verify`: {problems[0].message}; nothing was published")
    with new_directory(dest) as staging:
        for item in [*entry.components, *entry.constants, *entry.parity]:
            source, target = registry.member(entry, item.path), staging / item.path
            if staging.resolve() not in target.resolve().parents:  # a registry path never leads outside
                raise PublishError(f"export {entry.id} names {item.path!r}, outside its folder; nothing was published")
            progress(f"copying {item.path}")
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, symlinks=False)
                digest = tree_sha256(target)
            else:
                shutil.copyfile(source, target)
                digest = file_sha256(target)
            if digest != item.sha256:
                raise PublishError(
                    f"the copy of {item.path} does not match the registry's sha256; nothing was published"
                )
        notices = gather(entry, staging, progress)
        progress("describing the packages")
        contract = describe_loop({c.name: staging / c.path for c in entry.constants}) if describe_loop else None
        manifest = mf.build(staging, entry, zoo_version, contract.as_dict() if contract is not None else None)
        manifest["notices"] = {"files": list(notices.files), "source": notices.source, "missing": notices.missing}
        progress("drawing the card's pictures")
        figures = draw(staging, entry, manifest, getattr(spec, "sample_rate", None))
        (staging / CARD).write_text(model_card(entry, manifest, spec, figures), encoding="utf-8")
        manifest["files"] = mf.file_list(staging)  # the card too
        (staging / mf.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


@dataclass(frozen=True)
class FolderProblem:
    path: str
    message: str


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / mf.MANIFEST
    if not path.is_file() or path.is_symlink():
        raise mf.ManifestError(f"{folder} holds no {mf.MANIFEST}: not a folder `zoo publish` wrote")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise mf.ManifestError(f"{path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB: not a manifest zoo wrote")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise mf.ManifestError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema_version") != mf.SCHEMA_VERSION:
        raise mf.ManifestError(
            f"{path}: schema_version {data.get('schema_version') if isinstance(data, dict) else None!r}"
            f" is not {mf.SCHEMA_VERSION}"
        )
    if not isinstance(data.get("files"), list):
        raise mf.ManifestError(f"{path} lists no files")
    return data


def verify_folder(
    folder: Path, progress: Callable[[str], None] = lambda _: None, data: dict[str, Any] | None = None
) -> list[FolderProblem]:
    """Every file the manifest lists is there, a regular file of its size and sha256, and nothing
    else is (links and stray files named); paths that leave the folder are refused, never read."""
    folder = Path(folder)
    data = read_manifest(folder) if data is None else data
    root = folder.resolve()
    problems, listed = [], set()
    for record in data["files"]:
        rel = str(record.get("path", "")) if isinstance(record, dict) else ""
        target = (folder / rel).resolve() if rel else root
        if not rel or Path(rel).is_absolute() or root not in target.parents:
            problems.append(FolderProblem(rel or "?", "the manifest names a path outside the folder: not read"))
            continue
        listed.add(rel)
        path = folder / rel
        progress(f"hashing {rel}")
        if path.is_symlink() or (path.exists() and not path.is_file()):
            problems.append(FolderProblem(rel, "is not a regular file"))
        elif not path.exists():
            problems.append(FolderProblem(rel, "is missing"))
        elif path.stat().st_size != record.get("bytes"):
            problems.append(
                FolderProblem(rel, f"has {path.stat().st_size} bytes, the manifest says {record.get('bytes')}")
            )
        elif file_sha256(path) != record.get("sha256"):
            problems.append(FolderProblem(rel, "has changed: its sha256 is not the manifest's"))
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel == mf.MANIFEST or rel in listed or (path.is_dir() and not path.is_symlink()):
            continue
        problems.append(FolderProblem(rel, "is not listed in the manifest (a stray file)"))
    return problems


def execute_folder(
    folder: Path, failed: set[str], progress: Callable[[str], None] = lambda _: None, data: dict[str, Any] | None = None
) -> tuple[list[FolderProblem], list[dict[str, Any]]]:
    """Each package of the folder run on its recorded parity inputs by the levels this machine has (the
    MIL interpreter; CoreML on macOS), judged by the thresholds the export passed; a package any of
    whose files failed its hash (``failed``: relative paths) is not run."""
    from ..registry.verify import execute_packages

    folder = Path(folder)
    data = read_manifest(folder) if data is None else data
    packages = {name: folder / p["path"] for name, p in data.get("packages", {}).items()}
    parity = {name: folder / path for name, path in dict(data.get("parity", {})).items()}
    broken = {
        name
        for name, p in data.get("packages", {}).items()
        if any(f == p["path"] or f.startswith(p["path"] + "/") for f in failed)
    } | {name for name, path in dict(data.get("parity", {})).items() if path in failed}
    for path in [*packages.values(), *parity.values()]:
        if folder.resolve() not in path.resolve().parents:
            raise mf.ManifestError(f"{folder}: the manifest names {path} outside the folder; nothing was executed")
    problems, results = execute_packages(
        str(data.get("export_id", folder.name)),
        packages,
        parity,
        list(data.get("validation", [])),
        str(data.get("variant", {}).get("precision", "fp32")),
        broken,
        progress,
    )
    return [FolderProblem(p.name, p.message) for p in problems], results
