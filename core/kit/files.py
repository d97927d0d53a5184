"""Files a plugin reads or keeps: the sha256 a plugin records for each weights file it read, and
the directory it may keep its own files in (under zoo's cache root)."""

from __future__ import annotations

from ..util.cachedir import plugin_cache_dir
from ..util.hashing import file_sha256

__all__ = ["file_sha256", "plugin_cache_dir"]
