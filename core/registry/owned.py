"""What of zoo's own state a path is, or lies inside: the registry and its lock, the cache (stage
cache, run results, plugins' files) and every registered export's directory (where its entry places
it, proven or not). Nothing the user asks zoo to write — `zoo run -o`, `zoo publish --dir` — may go
there: `zoo rm` or a cache clean would delete it, or it would overwrite what zoo keeps."""

from __future__ import annotations

import os
from pathlib import Path

from ..util.cachedir import default_cache_root
from .exportdir import entry_path
from .store import Registry, RegistryError


def zoo_state(registry: Registry, path: Path) -> tuple[str, Path | None]:
    """("", None) when ``path`` (links resolved) is none of zoo's; (what, None) when it is the registry
    or its lock; (what, folder) when it lies in (or is) the cache or a registered export's directory."""
    target = Path(os.path.realpath(path))
    for exact, what in ((registry.target, "the registry"), (registry.lock_path, "the registry's lock")):
        if target == Path(os.path.realpath(exact)):
            return what, None
    inside = [(default_cache_root(), "zoo's cache")]
    try:
        inside += [(entry_path(registry, e), f"export {e.id}") for e in registry.exports()]
    except RegistryError:
        pass  # a broken registry is reported where it is read; its own file is checked above
    for folder, what in inside:
        folder = Path(os.path.realpath(folder))
        if folder == target or folder in target.parents:
            return what, folder
    return "", None
