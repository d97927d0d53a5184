"""Constants stored compressed: the tensors of its constant files a model declares
(``ModelSpec.compressed_constants``) written as look-up tables (``kit.constants``' format) when its
variant is compressed, and what each cost.

A tensor is viewed as [rows, last dimension]; each group of ``GROUP_SIZE`` rows gets its own table
(``lut_kmeans``, as a package's weights do per group of output channels: a text table's rows are its
tokens). Its width: the mode's (``p6`` 6, ``p4`` 4; ``w8``, whose weights are linear int8, 8 bits of
table), or for ``mixed`` the narrowest of ``MIXED_BITS`` whose SNR on the tensor itself reaches
``MIXED_TARGET_DB`` — a looked-up row is the output of the lookup, held to the target a package's
outputs are. Each tensor's SNR is measured on the file as written, read back through the loader the
run loop uses, and must reach its width's floor (``PALETTE_FLOOR_DB``, as a weight must); how the
whole loop speaks with them is judged by the ``loop:compressed`` stage.

May import: plugin, kit (and the compression package's own modules)."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from .modes import GROUP_SIZE, MIXED_BITS, MIXED_TARGET_DB, MODES, PALETTE_FLOOR_DB


@dataclass(frozen=True)
class ConstantRecord:
    """One tensor of a constant file as a compressed variant stores it. ``bits`` 0: kept as it was
    (no width reached the target); ``snr_db``: of the stored tensor read back, against the original."""

    constant: str
    tensor: str
    bits: int
    snr_db: float
    floor_db: float
    bytes_before: int
    bytes_after: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def declared_tensors(
    declared: Mapping[str, tuple[str, ...]], constants: Mapping[str, Any]
) -> dict[str, tuple[str, ...]]:
    """{constant name: tensors to compress} for the constants present (declared names may be patterns:
    ``voice_*``)."""
    out: dict[str, tuple[str, ...]] = {}
    for name in sorted(constants):
        for pattern, tensors in declared.items():
            if fnmatch.fnmatchcase(name, pattern):
                out[name] = tuple(dict.fromkeys(out.get(name, ()) + tuple(tensors)))
    return out


def widths(compression: str) -> tuple[int, ...]:
    """The widths a compression tries for a constant, narrowest first."""
    if compression == "mixed":
        return MIXED_BITS
    return (MODES[compression].bits,)


def snr_db(original: Any, stored: Any) -> float:
    """``validation.metrics.snr_db`` of ``stored`` against ``original`` (chunked: memory bounded for
    a 136 M-value table), -inf where it has none (a non-finite element)."""
    from ..validation.metrics import snr_db as measured

    snr = measured(stored, original)
    return snr if snr == snr else float("-inf")


def palettize(values: Any, bits: int) -> Any:
    """``values`` as look-up tables of ``bits`` bits per group of ``GROUP_SIZE`` rows, the groups
    clustered in worker processes (``palette.prefill_groups``) and indexed here."""
    import numpy as np

    from ..kit.constants import Palettized
    from .palette import kmeans_workers, lut_kmeans, prefill_groups

    cols = values.shape[-1]
    rows = values.reshape(-1, cols)
    starts = range(0, len(rows), GROUP_SIZE)
    tables: dict = {}
    prefill_groups((rows[start : start + GROUP_SIZE] for start in starts), bits, tables, kmeans_workers())
    luts, indices = [], []
    for start in starts:
        lut, index = lut_kmeans(rows[start : start + GROUP_SIZE], bits, tables)
        luts.append(lut)
        indices.append(index)
    return Palettized(
        tuple(values.shape),
        bits,
        GROUP_SIZE,
        np.stack(luts),
        np.concatenate(indices) if indices else np.zeros(0, np.uint8),
    )


def compress_constants(
    files: Mapping[str, tuple[Path, str]],
    tensors_of: Mapping[str, tuple[str, ...]],
    compression: str,
    out_dir: Path,
    target_db: float = MIXED_TARGET_DB,
) -> tuple[dict[str, Path], list[ConstantRecord]]:
    """Write the tensors ``tensors_of`` names ({constant name: tensor names}, as ``declared_tensors``
    resolves them) of ``files`` ({constant name: (path, path relative to the export)}) compressed into
    ``out_dir`` at the same relative paths; returns {constant name: new path} for the files written,
    and a record per tensor."""
    import numpy as np
    from safetensors.numpy import load_file

    from ..kit.constants import load_constants, packed_size, palettized_names, save_constants

    written: dict[str, Path] = {}
    records: list[ConstantRecord] = []
    for name, tensors in tensors_of.items():
        source, relative = Path(files[name][0]), files[name][1]
        if palettized_names(source):
            raise ValueError(f"constant {name} ({source.name}) is already compressed")
        stored = load_file(str(source))
        palettized = {}
        for tensor in tensors:
            value = stored.get(tensor)
            if value is None:
                raise ValueError(f"constant {name} ({source.name}) has no tensor {tensor!r} to compress")
            if value.dtype not in (np.float16, np.float32) or value.ndim < 2 or value.shape[-1] == 0:
                raise ValueError(
                    f"constant {name}: tensor {tensor!r} is {value.dtype} {list(value.shape)}; only float16/float32 "
                    "tensors of two or more dimensions are stored as look-up tables"
                )
            for bits in widths(compression):
                candidate = palettize(value, bits)
                if compression != "mixed" or snr_db(value, candidate.expand()) >= target_db:
                    palettized[tensor] = candidate
                    break
        out = (out_dir / relative).resolve()
        if not out.is_relative_to(out_dir.resolve()):  # a relative path read from disk: never written outside
            raise ValueError(f"constant {name}: {relative!r} is not a path inside the export")
        out.parent.mkdir(parents=True, exist_ok=True)
        save_constants(out, {k: v for k, v in stored.items() if k not in palettized}, palettized)
        written[name] = out
        back = load_constants(out)  # measured as the run loop will read it
        for tensor in tensors:
            original = stored[tensor]
            p = palettized.get(tensor)
            records.append(
                ConstantRecord(
                    name,
                    tensor,
                    p.bits if p else 0,
                    snr_db(original, back[tensor]),
                    PALETTE_FLOOR_DB[p.bits] if p else float("inf"),
                    int(original.nbytes),
                    int(p.lut.nbytes + packed_size(original.size, p.bits) if p else original.nbytes),
                )
            )
    return written, records


def constant_checks(records: list[ConstantRecord]) -> list[Any]:
    """The ``mil`` checks of a compression's constants: each stored tensor at least its width's floor
    (a tensor kept as it was is identical: inf)."""
    from ..validation.checks import Check

    checks = []
    for r in records:
        ok = r.snr_db >= r.floor_db if r.bits else r.snr_db == float("inf")
        value = 999.0 if r.snr_db == float("inf") else max(r.snr_db, -999.0)  # finite for the record
        checks.append(
            Check(
                "mil",
                f"constant:{r.constant}",
                "passed" if ok else "failed",
                "snr_db_min",
                value,
                r.floor_db if r.bits else None,
                ""
                if ok
                else f"{r.tensor} read back at {r.snr_db:.1f} dB, under the {r.bits}-bit floor {r.floor_db:g} dB",
                detail=f"{r.tensor}: {r.bits or 'no'}-bit tables, {r.bytes_before} -> {r.bytes_after} bytes",
                basis=(
                    f"a tensor stored as {r.bits}-bit tables decompresses at least as close as a weight must "
                    "(modes.PALETTE_FLOOR_DB)"
                    if r.bits
                    else "kept as it was: no width reached the target"
                ),
            )
        )
    return checks
