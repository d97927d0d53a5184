"""coremltools plumbing: loading a saved package's program, running a compression pass over every
function, saving it, and decompressing a constexpr op with zoo's own kernels (``weight_snrs``)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from .modes import WEIGHT_THRESHOLD
from .palette import kmeans_workers, prefill_tables


def _weight_consts(prog: Any) -> list[Any]:
    """The float constants large enough to be compressed, once per name (functions share them)."""
    import numpy as np

    seen: dict[str, Any] = {}
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type != "const" or op.name in seen:
                continue
            val = op.outputs[0].val
            if (
                isinstance(val, np.ndarray)
                and val.dtype.kind == "f"
                and val.size > WEIGHT_THRESHOLD
                and op.outputs[0].child_ops
            ):
                seen[op.name] = op
    return list(seen.values())


def _load(src: Path) -> tuple[Any, Any]:
    """(spec, MIL program) of a saved package."""
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    from ..coreml.tools import import_coremltools, load_package_spec

    import_coremltools()
    spec = load_package_spec(src)
    return spec, load_milproto(
        spec, spec.specificationVersion, file_weights_dir=str(src / "Data" / "com.apple.CoreML" / "weights")
    )


def _apply(prog: Any, spec: Any, kind: str, config: Any) -> None:
    """Run coremltools' compression pass over every function of ``prog`` (its public API refuses
    multifunction programs), then store each weight the functions share once."""
    from coremltools.converters.mil.mil.passes.graph_pass import PassOption
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY

    graph_pass = PASS_REGISTRY[
        "compression::linear_quantize_weights" if kind == "linear" else "compression::palettize_weights"
    ]
    graph_pass.set_options([PassOption("config", config), PassOption("joint_compression", False)])
    if kind == "palette":  # the look-up tables in every core first; the pass then finds them
        prefill_tables(prog, graph_pass, kmeans_workers())
    graph_pass.apply(prog)
    if len(prog.functions) > 1:  # each function compressed its copy of a shared weight: store it once
        PASS_REGISTRY["common::const_deduplication"]._deduplicate_const_across_functions(prog)
        prog.export_as_multifunction = True
        prog.default_function_name = spec.description.defaultFunctionName or next(iter(prog.functions))
    prog.skip_all_passes = True


def _save(prog: Any, spec: Any, version: int, dst: Path) -> None:
    from coremltools.converters.mil.converter import mil_convert

    from ..coreml.tools import import_coremltools, zoo_conversion

    ct = import_coremltools()
    with zoo_conversion():
        model = mil_convert(
            prog,
            convert_to="mlprogram",
            convert_from="milinternal",
            specification_version=version,
            compute_units=ct.ComputeUnit.CPU_ONLY,
            model_description=spec.description,
            skip_model_load=True,
        )
    if dst.exists():
        shutil.rmtree(dst)
    model.save(str(dst))


def _original_name(op: Any) -> str:
    """The weight constant a compressed (constexpr) op stands for: coremltools names it after it."""
    return re.sub(r"_(palettized|quantized)$", "", op.name)


def decompress(op: Any) -> Any:
    """A constexpr op's dense weight, by zoo's own kernels (what the MIL interpreter executes)."""
    from ..mil import KERNELS

    return KERNELS[op.op_type](**{param: var.val for param, var in op.inputs.items()})


def weight_snrs(prog: Any, originals: dict[str, Any]) -> dict[str, float]:
    """Per compressed weight (named as its original constant), the SNR of its decompression by
    zoo's kernels against the original values."""
    import math

    out: dict[str, float] = {}
    for fn in prog.functions.values():
        for op in fn.operations:
            if not op.op_type.startswith("constexpr_"):
                continue
            name = _original_name(op)
            if name not in originals or name in out:
                continue
            noise, signal = error_energy(decompress(op), originals[name])
            out[name] = 999.0 if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise)
    return out


#: values widened to float64 at once by ``error_energy`` (8 MB per array)
ENERGY_CHUNK = 1 << 20


def error_energy(approximate: Any, exact: Any) -> tuple[float, float]:
    """(Σ (approximate - exact)², Σ exact²) in float64. Two fp16 or two float32/64 arrays in one
    compiled pass (``kmeans.energies*``); other pairs a chunk of ENERGY_CHUNK values at a time.
    Widening whole weights first held two float64 copies of each (vibevoice's decoder, 330 M
    values: 9.4 s of its 69 s mixed compression in the conversions); the chunks still spent 8.7 of
    vibevoice's 162 s in the conversions, the compiled pass none (2026-12-05)."""
    import numpy as np

    approx = np.ascontiguousarray(approximate).reshape(-1)
    want = np.ascontiguousarray(exact).reshape(-1)
    if approx.size != want.size:
        raise ValueError(f"{approx.size} values compared with {want.size}")
    floats = (np.float32, np.float64)
    if approx.dtype == want.dtype == np.float16:
        from .kmeans import energies_fp16
        from .palette import _fp16_values

        noise, signal = energies_fp16(approx.view(np.uint16), want.view(np.uint16), _fp16_values())
        return float(noise), float(signal)
    if approx.dtype in floats and want.dtype in floats:
        from .kmeans import energies

        noise, signal = energies(approx, want)
        return float(noise), float(signal)
    noise = signal = 0.0
    for start in range(0, want.size, ENERGY_CHUNK):
        x = want[start : start + ENERGY_CHUNK].astype(np.float64)
        e = approx[start : start + ENERGY_CHUNK].astype(np.float64) - x
        noise += float(np.dot(e, e))
        signal += float(np.dot(x, x))
    return noise, signal
