"""What `zoo run -o` writes for a model's declared output (``ModelSpec.output``): a WAV for audio
(streamed by ``speak``), an ``.npy`` or ``.json`` file for an embedding or tokens, here. Written
aside and renamed into place: a reader never sees half a file, a failure leaves nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..plugin.errors import UsageError
from ..plugin.names import OUTPUT_SUFFIXES
from ..util.files import write_atomically


def check_suffix(kind: str, model: str, output: Path) -> None:
    """``-o``'s suffix must be one the model's output is written as (UsageError naming them)."""
    suffixes = OUTPUT_SUFFIXES[kind]
    if output.suffix.lower() not in suffixes:
        what = {"audio": "audio (a WAV)", "embedding": "an embedding", "tokens": "tokens"}[kind]
        raise UsageError(f"-o {output}: {model} outputs {what}; give a file ending in {' or '.join(suffixes)}")


def write_values(path: Path, values: Any, provenance: dict[str, Any]) -> None:
    """``values`` as ``.npy`` (the array alone, no pickle) or ``.json`` (``{"values": [...], "shape",
    "dtype", **provenance}``: where the vector came from, for a reader months later)."""
    import numpy as np

    array = np.asarray(values)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("the run loop's output holds non-finite values: nothing was written")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        write_atomically(path, lambda f: np.save(f, array, allow_pickle=False))
    else:
        record = {"values": array.tolist(), "shape": list(array.shape), "dtype": str(array.dtype), **provenance}
        text = json.dumps(record, indent=1)
        write_atomically(path, lambda f: f.write(text.encode("utf-8")))
