"""The run-result cache: a model whose output is not audio (a speaker embedding) returns the result it
stored for the same export, input recording, options and backend, without running the model again
(the clone prompt an app caches instead of recomputing; ``zoo run --no-cache`` bypasses it).

Trusted no more than the stage cache: an entry is ``<key>.npy`` (the values, read without pickle)
and ``<key>.json`` (the marker, written last) recording the sha256 of the ``.npy``; a reuse hashes the
file again, and an entry that does not match, or cannot be read, is a miss that is removed and
rebuilt. The key hashes everything the result depends on: the export's id and the sha256 of each of
its packages and constants, the backend, the input's samples (``kit.audio.wav_digest``), the seed and
``--set`` options. Only files named by such a key, in this cache's own directory, are ever removed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..util.cachedir import default_cache_root
from ..util.files import write_atomically
from ..util.hashing import file_sha256, stable_hash

#: a key is a sha256 in hex: the only names this cache reads or removes
_KEY = re.compile(r"^[0-9a-f]{64}$")
#: a marker is small: a larger file is not one of ours (and is never read whole)
_MARKER_BYTES = 1 << 20


@dataclass(frozen=True)
class Cached:
    values: Any
    frames: int
    sample_rate: int
    info: dict[str, Any]


class ResultCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_cache_root() / "runs"

    @staticmethod
    def key(entry: Any, backend: str, input_digest: str, seed: int, settings: dict[str, str], model: str) -> str:
        return stable_hash(
            {
                "model": model,
                "export": entry.id,
                "packages": sorted((c.name, c.sha256) for c in entry.components),
                "constants": sorted((c.name, c.sha256) for c in entry.constants),
                "backend": backend,
                "input": input_digest,
                "seed": seed,
                "settings": sorted(settings.items()),
            }
        )

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not _KEY.match(key):
            raise ValueError(f"not a result-cache key: {key!r}")
        return self.root / f"{key}.npy", self.root / f"{key}.json"

    def get(self, key: str) -> tuple[Cached | None, str]:
        """(the stored result, "") or (None, why it is a miss)."""
        import numpy as np

        values_path, marker_path = self._paths(key)
        if values_path.is_symlink() or marker_path.is_symlink():
            return None, "the cache entry is a link, not a file zoo wrote: ignored"  # never read through it
        if not marker_path.is_file():
            return None, "not cached"
        try:
            if marker_path.stat().st_size > _MARKER_BYTES:
                raise ValueError("its marker is too large to be one")
            marker = json.loads(marker_path.read_text(encoding="utf-8"))
            if not isinstance(marker, dict) or marker.get("sha256") != file_sha256(values_path):
                raise ValueError("its values file does not match the sha256 its marker records")
            values = np.load(values_path, allow_pickle=False)
            cached = Cached(values, int(marker["frames"]), int(marker["sample_rate"]), dict(marker.get("info", {})))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.remove(key)
            return None, f"the cached result was unusable ({exc}) and was removed"
        return cached, ""

    def put(self, key: str, values: Any, frames: int, sample_rate: int, info: dict[str, Any]) -> None:
        """Store a result: its values, then the marker recording their sha256 (written last: an entry
        without a marker is a miss)."""
        import numpy as np

        values_path, marker_path = self._paths(key)
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomically(values_path, lambda f: np.save(f, np.asarray(values), allow_pickle=False))
        record = {"sha256": file_sha256(values_path), "frames": frames, "sample_rate": sample_rate, "info": info}
        write_atomically(marker_path, lambda f: f.write(json.dumps(record).encode("utf-8")))

    def remove(self, key: str) -> None:
        for path in self._paths(key):
            try:
                if path.is_file() and not path.is_symlink():
                    path.unlink()
            except OSError:
                pass
