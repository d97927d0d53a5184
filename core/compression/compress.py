"""Post-training weight compression of a saved package (``coremltools.optimize.coreml``).

A variant's ``compression`` names a mode (``COMPRESSIONS``); ``compress_package`` applies it to
the converted package — every function of a multifunction package, each shared weight
compressed once — and saves a new package whose weights are constexpr ops (int8 with a
per-channel scale, or a look-up table of 2^bits values per group of 16 output channels), which
zoo's MIL interpreter executes (``core/mil/kernels/constexpr.py``) like any other op.

Weights a plugin declares uncompressed (``ComponentSpec.uncompressed``: regular expressions
on the weight constants' names, which coremltools derives from the torch parameter paths)
stay as they are, with the plugin's measured reason next to the declaration.

The rest lives beside this module: ``modes``, ``record`` (and the gate), ``palette``,
``passes`` (coremltools), ``planner`` (``mixed``); their names are re-exported here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from .modes import (  # noqa: F401
    GROUP_SIZE,
    INTEGER_PLAN_JUMPS,
    INTEGER_PLAN_SHARE,
    KMEANS_BINS,
    MIXED_BITS,
    MIXED_TARGET_DB,
    MODES,
    PALETTE_FLOOR_DB,
    WEIGHT_THRESHOLD,
    Mode,
)
from .palette import _distinct, _lut_kmeans, _nearest, lut_kmeans, op_config, palette_config  # noqa: F401
from .passes import _apply, _load, _original_name, _save, _weight_consts, decompress, weight_snrs  # noqa: F401
from .planner import MixedPlan, MixedTargets, choose_widths, integer_noise_budget, layer_group, plan_mixed  # noqa: F401
from .record import MARGIN_DB, OUTPUT_SNR_FLOOR_DB, CompressionRecord, equivalent_output_snr  # noqa: F401

COMPRESSION_FILE = "compression.json"


def compress_package(
    src: Path,
    dst: Path,
    mode_name: str,
    uncompressed: Iterable[str] = (),
    parity_file: Path | None = None,
    progress: Any = None,
    targets: MixedTargets = MixedTargets(),
    measure: bool = True,
) -> CompressionRecord:
    """Compress ``src`` into a new package at ``dst`` (``src`` is only read). ``mixed`` measures each
    weight's effect on the outputs on the parity examples in ``parity_file`` against ``targets``;
    ``progress(done, total)`` follows its executions. With ``measure`` (and a ``parity_file``) the
    record carries the outputs' SNR under noise of the compression's size (the gate's basis)."""
    import coremltools.optimize.coreml as cto

    from ..util.hashing import tree_size

    mode = MODES[mode_name]
    tables: dict = {}  # each group's look-up table, clustered once (palette_config)
    spec, prog = _load(src)
    keep = [re.compile(p) for p in uncompressed]
    consts = _weight_consts(prog)
    kept = sorted(op.name for op in consts if any(k.search(op.name) for k in keep))
    originals = {op.name: op.outputs[0].val for op in consts if op.name not in kept}
    bits: dict[str, int] = {}
    plan = None
    program = None
    if mode.kind == "mixed":
        if parity_file is None:
            raise ValueError("the mixed compression measures each weight on the parity examples: pass parity_file")
        from ..mil import MilProgram

        program = MilProgram.load(src)  # the plan's sensitivity runs, then the gate's basis
        del consts
        bits, plan = plan_mixed(src, kept, originals, parity_file, progress, targets, tables, (spec, prog), program)
        del prog  # compressed by the plan's first pass
        spec, prog = _load(src)
        config = cto.OptimizationConfig(
            op_name_configs={
                **{name: palette_config(b, tables) for name, b in bits.items()},
                **{name: None for name in kept},
            }
        )
        _apply(prog, spec, "palette", config)
    else:
        _apply(
            prog,
            spec,
            mode.kind,
            cto.OptimizationConfig(
                global_config=op_config(mode, tables), op_name_configs={name: None for name in kept}
            ),
        )
    snrs = weight_snrs(prog, originals)
    measured, measured_basis = (
        equivalent_output_snr(src, prog, originals, parity_file, program=program)
        if measure and parity_file is not None and snrs
        else (None, "")
    )
    _save(prog, spec, max(spec.specificationVersion, {"iOS16": 7, "iOS17": 8, "iOS18": 9}[mode.target]), dst)
    # coremltools leaves a weight whose shape its mode cannot take (e.g. fewer output channels than
    # a group) as it was, with a warning: recorded as such, never counted as compressed
    left = tuple(sorted(set(originals) - set(snrs)))
    return CompressionRecord(
        mode.name,
        tuple(sorted(snrs.items())),
        tuple(kept),
        tree_size(src),
        tree_size(dst),
        left,
        tuple(sorted((n, b) for n, b in bits.items() if n in snrs)),
        plan.as_dict() if plan else None,
        measured,
        measured_basis,
    )
