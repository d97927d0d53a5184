"""The core's default hook implementations, registered like any plugin.

They run after the owning plugin's implementation (``trylast``), so a plugin
overrides them by implementing the same hook and returning a result.
"""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..plugin.hookspecs import hookimpl
from ..plugin.spec import ModelSpec, Variant
from ..plugin.traceable import Traceable

NAME = "zoo.core.host.defaults"


def _np_dtype(name: str) -> Any:
    import numpy as np

    try:
        return {"float32": np.float32, "float16": np.float16, "int32": np.int32, "bool": np.bool_}[name]
    except KeyError:
        raise ValueError(f"unsupported tensor dtype {name!r}") from None


def coreml_target(target: str) -> Any:
    import coremltools as ct

    return getattr(ct.target, target)


def convert_function(traceable: Traceable, variant: Variant) -> Any:
    """Trace one function and convert it to an ``MLModel`` (not yet saved)."""
    from ..coreml.tools import import_coremltools

    ct = import_coremltools()
    import numpy as np
    import torch

    example = traceable.examples[0]
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[spec.name])) for spec in traceable.inputs)
    module = traceable.module.eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, args, check_trace=False)
    inputs = []
    for spec in traceable.inputs:
        shape: list[Any] = list(spec.shape)
        for axis, (lo, hi) in spec.flexible.items():
            shape[axis] = ct.RangeDim(lower_bound=lo, upper_bound=hi, default=int(example[spec.name].shape[axis]))
        inputs.append(ct.TensorType(name=spec.name, shape=ct.Shape(shape), dtype=_np_dtype(spec.dtype)))
    states = [
        ct.StateType(wrapped_type=ct.TensorType(shape=state.shape, dtype=_np_dtype(state.dtype)), name=state.name)
        for state in traceable.states
    ]
    options: dict[str, Any] = {
        "convert_to": "mlprogram",
        "minimum_deployment_target": coreml_target(variant.target),
        "compute_precision": ct.precision.FLOAT16 if variant.precision == "fp16" else ct.precision.FLOAT32,
    }
    options.update(traceable.convert_options)
    removed = options.pop("remove_passes", None)
    pass_options = options.pop("pass_options", None)
    if removed or pass_options:
        pipeline = ct.PassPipeline.DEFAULT
        if removed:  # e.g. "common::divide_to_multiply", where a component needs IEEE division as traced
            pipeline.remove_passes(list(removed))
        for pass_name, values in (pass_options or {}).items():  # e.g. a large mask kept computed
            pipeline.set_options(pass_name, {key: str(value) for key, value in values.items()})
        options["pass_pipeline"] = pipeline
    if options.get("compute_precision") in ("fp32", "fp16"):  # a component may pin its precision
        options["compute_precision"] = (
            ct.precision.FLOAT32 if options["compute_precision"] == "fp32" else ct.precision.FLOAT16
        )
    if "op_selector" in options:
        selector = options.pop("op_selector")
        if variant.precision == "fp16":
            options["compute_precision"] = ct.transform.FP16ComputePrecision(op_selector=selector)
    return ct.convert(
        traced,
        inputs=inputs,
        outputs=[ct.TensorType(name=name) for name in traceable.outputs],
        states=states or None,
        **options,
    )


def save_component(functions: Mapping[str, Traceable], variant: Variant, out_path: Path) -> Path:
    """Convert every function and save one package (multifunction if several); every pass
    pipeline of the conversions (and of the multifunction merge, which converts the merged
    program again) checks its program once (``validated_once``) and tests its constants for fp16
    overflow slice by slice (``lean_overflow_check``); constants kept in the program are written in
    one append each (``quick_immediate_values``)."""
    from ..coreml.tools import zoo_conversion

    with zoo_conversion():
        return _save_component(functions, variant, Path(out_path))


def _save_component(functions: Mapping[str, Traceable], variant: Variant, out_path: Path) -> Path:
    if list(functions) == ["main"]:
        convert_function(functions["main"], variant).save(str(out_path))
        return out_path
    from ..coreml.tools import import_coremltools

    ct = import_coremltools()

    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".functions-") as tmp:
        descriptor = ct.utils.MultiFunctionDescriptor()
        for fn_name, traceable in functions.items():
            part = Path(tmp) / f"{fn_name}.mlpackage"
            convert_function(traceable, variant).save(str(part))
            # the converted program's weights (cyclic MIL graph) go before the next function converts
            gc.collect()
            descriptor.add_function(str(part), src_function_name="main", target_function_name=fn_name)
        descriptor.default_function_name = next(iter(functions))
        ct.utils.save_multifunction(descriptor, str(out_path))
    return out_path


@hookimpl(trylast=True)
def convert(
    model: ModelSpec, variant: Variant, component: str, functions: Mapping[str, Traceable], out_path: Path
) -> Path:
    return save_component(functions, variant, out_path)
