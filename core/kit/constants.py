"""Reading (and writing) an export's constant files: safetensors, where a compressed variant may store
some tensors as look-up tables (``ModelSpec.compressed_constants``). A run loop reads every constant
file through :func:`load_constants`, which gives each tensor back at its shape, whatever was stored.

The format (what an app's own reader implements). A tensor ``T`` of shape ``S`` stored palettized is
two safetensors entries and one line of the header's metadata:

* ``T:lut`` — float16 or float32 ``[groups, 2**bits]``: one table per group of ``group_rows`` rows
  of ``T`` viewed as ``[rows, S[-1]]`` (the last group may be shorter);
* ``T:indices`` — uint8, every element's index in its group's table, row-major, ``bits`` bits each,
  most significant bit first, packed into bytes without gaps (the last byte padded with zeros);
* metadata key ``zoo.palettized``: JSON ``{"T": {"shape": S, "bits": bits, "group_rows": rows}}``.

Element ``e`` (row ``e // S[-1]``) is ``T:lut[row // group_rows, index[e]]``. Other tensors are
stored as they are.

May import: numpy and safetensors (no torch, no coremltools)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the metadata key naming a file's palettized tensors
METADATA_KEY = "zoo.palettized"
LUT, INDICES = ":lut", ":indices"


class ConstantsError(ValueError):
    """A constant file that is not what the format says (named, with what is wrong)."""


@dataclass(frozen=True)
class Palettized:
    """One tensor as look-up tables: ``lut`` [groups, 2**bits], ``indices`` (uint8, one per element,
    row-major over ``shape``), ``group_rows`` rows of ``shape`` viewed as [rows, shape[-1]] per table."""

    shape: tuple[int, ...]
    bits: int
    group_rows: int
    lut: Any
    indices: Any

    def expand(self) -> Any:
        """The tensor at its shape, in the tables' dtype."""
        import numpy as np

        cols = self.shape[-1]
        rows = math.prod(self.shape) // cols if cols else 0
        group = (np.arange(rows) // self.group_rows)[:, None]  # each row's table, broadcast along the row
        return self.lut[group, self.indices.reshape(rows, cols)].reshape(self.shape)


def packed_size(count: int, bits: int) -> int:
    """Bytes ``count`` indices of ``bits`` bits take packed without gaps."""
    return -(-count * bits // 8)


def pack_indices(indices: Any, bits: int) -> Any:
    """``indices`` (uint8, each < 2**bits) as ``bits`` bits each, most significant first, packed."""
    from ..util.bits import pack_bits

    return pack_bits(indices, bits, lsb_first=False)


def unpack_indices(packed: Any, bits: int, count: int) -> Any:
    """The ``count`` indices of ``bits`` bits each that :func:`pack_indices` packed."""
    from ..util.bits import unpack_bits

    return unpack_bits(packed, bits, count, lsb_first=False)


def save_constants(path: Path, tensors: dict[str, Any], palettized: dict[str, Palettized]) -> None:
    """Write ``tensors`` as they are and ``palettized`` as look-up tables, in one safetensors file."""
    import numpy as np
    from safetensors.numpy import save_file

    entries = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    meta = {}
    for name, p in palettized.items():
        if name in entries or name + LUT in entries or name + INDICES in entries:
            raise ValueError(f"{path.name}: {name} is stored twice")
        entries[name + LUT] = np.ascontiguousarray(p.lut)
        entries[name + INDICES] = pack_indices(p.indices, p.bits)
        meta[name] = {"shape": list(p.shape), "bits": p.bits, "group_rows": p.group_rows}
    save_file(entries, str(path), metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)} if meta else None)


def palettized_names(path: Path) -> dict[str, dict[str, Any]]:
    """The palettized tensors a constant file's header declares ({} for a plain file)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # the library's own parse errors
        raise ConstantsError(f"constant file {path} is not a readable safetensors file: {exc}") from None
    if METADATA_KEY not in metadata:
        return {}
    try:
        declared = json.loads(metadata[METADATA_KEY])
    except ValueError:
        raise ConstantsError(f"constant file {path}: {METADATA_KEY} is not JSON") from None
    if not isinstance(declared, dict):
        raise ConstantsError(f"constant file {path}: {METADATA_KEY} is not a mapping of tensor names")
    return declared


def load_constants(path: str | Path) -> dict[str, Any]:
    """Every tensor of a constant file at its shape (numpy): palettized ones expanded. A file whose
    tables, indices and declared shape disagree is refused before anything is expanded (an expansion
    is never larger than its indices claim: 8/bits elements per stored byte)."""
    from safetensors.numpy import load_file

    path = Path(path)
    declared = palettized_names(path)
    try:
        stored = load_file(str(path))
    except Exception as exc:
        raise ConstantsError(f"constant file {path} is not a readable safetensors file: {exc}") from None
    out = {name: value for name, value in stored.items() if not name.endswith((LUT, INDICES))}
    for name, info in declared.items():
        out[name] = _read(path, name, info, stored).expand()
    strays = sorted(n for n in stored if n.endswith((LUT, INDICES)) and n.rsplit(":", 1)[0] not in declared)
    if strays:
        raise ConstantsError(f"constant file {path}: {strays[0]} belongs to no declared palettized tensor")
    return out


def _read(path: Path, name: str, info: Any, stored: dict[str, Any]) -> Palettized:
    import numpy as np

    where = f"constant file {path}, palettized tensor {name!r}"
    if not isinstance(info, dict):
        raise ConstantsError(f"{where}: its description is not a mapping")
    shape, bits, group = info.get("shape"), info.get("bits"), info.get("group_rows")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise ConstantsError(f"{where}: shape {shape!r} is not a list of positive integers")
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 8:
        raise ConstantsError(f"{where}: bits {bits!r} is not 1..8")
    if not isinstance(group, int) or isinstance(group, bool) or group < 1:
        raise ConstantsError(f"{where}: group_rows {group!r} is not a positive integer")
    lut, packed = stored.get(name + LUT), stored.get(name + INDICES)
    if lut is None or packed is None:
        raise ConstantsError(f"{where}: {name}{LUT} or {name}{INDICES} is missing")
    count = math.prod(shape)
    rows = count // shape[-1]
    groups = -(-rows // group)
    if packed.dtype != np.uint8 or packed.ndim != 1 or len(packed) != packed_size(count, bits):
        raise ConstantsError(
            f"{where}: {name}{INDICES} holds {packed.size} {packed.dtype} values; shape {shape} at {bits} bits "
            f"needs {packed_size(count, bits)} uint8"
        )
    if lut.dtype not in (np.float16, np.float32) or lut.shape != (groups, 1 << bits):
        raise ConstantsError(
            f"{where}: {name}{LUT} is {lut.dtype} {list(lut.shape)}, not float16/float32 [{groups}, {1 << bits}]"
        )
    return Palettized(tuple(shape), bits, group, lut, unpack_indices(packed, bits, count))
