"""Where zoo keeps its caches: the stage cache, the registry index, verified-file records and
plugins' own files, all below one root (``ZOO_CACHE``, else ``$XDG_CACHE_HOME/zoo``, else
``~/.cache/zoo``)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "ZOO_CACHE"


def default_cache_root() -> Path:
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zoo"


def plugin_cache_dir(plugin: str) -> Path:
    """A directory a plugin may keep its own files in (e.g. pocket_tts's cloned voices), under the
    cache root, created on demand; plugins ask for it instead of writing into the core's layout."""
    path = default_cache_root() / "plugins" / plugin
    path.mkdir(parents=True, exist_ok=True)
    return path
