"""Running a port and its upstream model in float64.

A faithful port computes the same function as upstream; in float64 the two can
only differ by summation order, ~1e-15 relative per op and well below 1e-9 after
a deep network — whatever the weights and their scale. Any larger difference is
a port bug, not rounding. That is why the ``reference`` level gates on float64
first and judges the working precision (fp32) separately, against a bound
measured on upstream itself (see ``calibration.py``).

:func:`as_float64` turns every floating-point parameter and buffer of the torch
modules reachable from the objects it is given into float64 *in place* (so that
modules shared between the traceables and the upstream model stay shared), and
back to each tensor's own dtype afterwards. float32 and float16 values are exact
in float64, so the round trip restores every tensor bit for bit.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

#: how deep :func:`modules_in` looks into plain objects, dicts and sequences for torch modules
_DEPTH = 3


def modules_in(*objects: Any) -> list[Any]:
    """Torch modules held by ``objects``: modules themselves, or found in their attributes, dicts, lists."""
    import torch

    found: dict[int, Any] = {}
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if id(obj) in seen or depth > _DEPTH:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            found[id(obj)] = obj
            return
        if isinstance(obj, (str, bytes, int, float, torch.Tensor)) or obj is None:
            return
        if isinstance(obj, Mapping):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple, set)):
            children = list(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            children = list(vars(obj).values())
        else:
            return
        for child in children:
            walk(child, depth + 1)

    for obj in objects:
        walk(obj, 0)
    return list(found.values())


def register_derived(module: Any, name: str, build: Callable[[Any], Any], persistent: bool = False) -> None:
    """Register buffer ``name`` computed by ``build(dtype)``: float32 for export, rebuilt in float64 by
    :func:`as_float64`. For tables a port precomputes (RoPE, STFT kernels) where upstream computes per
    call: rounded to float32 once, they would differ from upstream's float64 run by ~1e-7."""
    import torch

    module.register_buffer(name, build(torch.float32), persistent=persistent)
    if "_zoo_derived" not in module.__dict__:
        module.__dict__["_zoo_derived"] = {}
    module.__dict__["_zoo_derived"][name] = build


def _float64_mode(parameters: frozenset[int] = frozenset()) -> Any:
    """A TorchFunctionMode under which every floating-point tensor torch makes is float64.

    Upstream code pins float32 in places (``.float()``, ``dtype=torch.float32`` in
    factories, RoPE computed in float32) and a port mirrors those pins; both would
    otherwise leave float32 islands in a float64 run. The mode rewrites any requested
    floating dtype to float64 and upcasts any floating result that is not float64, so
    the two computations are compared as mathematical functions.

    ``parameters``: ids of parameters an op is given in float64 when it reads them
    narrower (a widened copy for that op; attribute reads such as ``.shape`` excepted).
    """
    import torch
    from torch.overrides import TorchFunctionMode

    floating = (torch.float32, torch.float16, torch.bfloat16)
    conv1d = torch.nn.functional.conv1d  # torch's own (what modules call)
    narrowing = {torch.Tensor.float, torch.Tensor.half, torch.Tensor.bfloat16}

    def widen(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float64:
            return value.to(torch.float64)
        if isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
            return (
                type(value)(widen(v) for v in value)
                if not hasattr(value, "_fields")
                else type(value)(*(widen(v) for v in value))
            )
        return value

    def widen_parameters(value: Any) -> Any:
        if isinstance(value, torch.nn.Parameter):
            return widen(value) if id(value) in parameters else value
        if isinstance(value, (tuple, list)) and any(isinstance(v, torch.nn.Parameter) for v in value):
            return type(value)(widen_parameters(v) for v in value)
        return value

    class Float64Mode(TorchFunctionMode):
        def __torch_function__(
            self, func: Any, types: Any, args: tuple = (), kwargs: dict[str, Any] | None = None
        ) -> Any:
            kwargs = dict(kwargs or {})
            if func in narrowing:
                return widen(args[0])
            if func is conv1d:
                sliced = _conv1d_in_slabs(*widen_parameters(args), **kwargs)
                if sliced is not None:
                    return sliced
            if kwargs.get("dtype") in floating:
                kwargs["dtype"] = torch.float64
            args = tuple(torch.float64 if isinstance(a, torch.dtype) and a in floating else a for a in args)
            if parameters and getattr(func, "__name__", "") != "__get__":
                args = tuple(widen_parameters(a) for a in args)
            return widen(func(*args, **kwargs))

    return Float64Mode()


#: bytes of the column matrix a float64 1-d convolution may unfold at once (see ``_conv1d_in_slabs``)
SLAB_BYTES = 32 << 20


def _conv1d_in_slabs(
    x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1
) -> Any:
    """``torch.conv1d`` of a float64 input a slab of output positions at a time, or None to run it
    whole (its columns within ``SLAB_BYTES``, or options this does not take).

    torch has no fast float64 convolution: it unfolds the input into a [C·K, L] column matrix and
    multiplies, so one 64 -> 32-channel, 3-tap conv over 240,000 positions (pocket_tts's voice
    encoder on a 10 s prompt) held 350 MB of columns beside its 61 MB output, and the float64
    parity of that encoder set the export's peak (+708 MB over the stage before, 2026-12-05).
    Each slab computes its outputs from exactly the input positions they read, with the same
    weights: the same sums, a slab's columns at most ``SLAB_BYTES``."""
    import torch
    import torch.nn.functional as F

    def single(value: Any) -> int | None:
        if isinstance(value, int):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], int):
            return int(value[0])
        return None

    step, spread, pad = single(stride), single(dilation), single(padding)
    if (
        not isinstance(x, torch.Tensor)
        or x.dtype != torch.float64
        or x.dim() != 3
        or not isinstance(weight, torch.Tensor)
        or weight.dtype != torch.float64
        or None in (step, spread, pad)
        or not isinstance(groups, int)
    ):
        return None
    assert step is not None and spread is not None and pad is not None
    taps = weight.shape[-1]
    reach = spread * (taps - 1) + 1  # input positions one output reads
    length = x.shape[-1] + 2 * pad
    outputs = (length - reach) // step + 1
    column = x.shape[1] // groups * taps * 8 * x.shape[0]  # bytes of one output position's column
    if outputs <= 1 or column * outputs <= SLAB_BYTES:
        return None
    if pad:
        x = F.pad(x, (pad, pad))
    per = max(1, SLAB_BYTES // column)
    out = x.new_empty((x.shape[0], weight.shape[0], outputs))
    for first in range(0, outputs, per):
        last = min(outputs, first + per)
        piece = x[..., first * step : (last - 1) * step + reach]
        out[..., first:last] = torch.conv1d(piece, weight, bias, step, 0, spread, groups)
    return out


@contextmanager
def as_float64(*objects: Any, lazy: tuple[Any, ...] = (), per_call: bool = False) -> Iterator[None]:
    """Every floating-point parameter and buffer of the modules in ``objects`` is float64 inside the
    block, and so is every floating-point tensor torch computes there (see :func:`_float64_mode`).

    The modules in ``lazy`` are widened only when called (a module's tensors, its submodules'
    included, when its forward first runs in the block): an upstream model whose one component is
    checked is not copied to float64 whole (pocket_tts: ~0.4 GB of peak memory per parity stage).
    A tensor such a module reads without being called stays float32: a same-dtype op then raises,
    and arithmetic between two such tensors rounds to float32 — so a lazy run may fail where an
    eager one passes, never the reverse (see :func:`levels.reference._float64`, which falls back).

    ``per_call``: parameters (of ``objects`` and ``lazy`` alike) are float64 only while their own
    module's forward runs — a call widens the module's own parameters, not its submodules', and
    puts the float32 tensors back when it returns — so no more than the running modules' weights
    exist in float64 at once (vibevoice's tts_lm: 2.4 GB of float64 weights per side otherwise).
    An op reading such a parameter outside its module's forward gets a float64 copy for itself
    (pocket_tts: ``F.linear`` on ``flow_lm.speaker_proj_weight``; vibevoice's decoder port calls
    upstream's modules from its own). Buffers are widened as above and stay float64 to the end of
    the block: they may hold state a later call reads (KV caches).

    Afterwards every parameter holds its own float32 tensor again (the very object, so weights two
    modules share stay shared) and every buffer is narrowed back to its dtype (keeping what the
    block wrote into it; float32 and float16 values are exact in float64)."""
    import torch

    originals: dict[int, tuple[Any, Any]] = {}  # parameter -> its data before the block
    buffers: dict[int, tuple[Any, torch.dtype]] = {}
    derived: list[tuple[Any, Any]] = []  # (buffer, its float32 data) of tables rebuilt in float64
    modules = modules_in(*objects)
    waiting = {id(sub): sub for module in modules_in(*lazy) for sub in module.modules()}
    for module in modules:
        for sub in module.modules():
            waiting.pop(id(sub), None)
    # per_call is decided by parameter, not module: a copy of a module that shares its parameters
    # (``traceable.state_copy``, made inside the block) widens them in its calls too
    scoped = {id(p) for module in modules + modules_in(*lazy) for p in module.parameters()} if per_call else set()
    calls: dict[int, list[list[Any]]] = {}  # module -> per active call, the parameters it widened

    def widen_parameter(param: Any) -> bool:
        if not param.is_floating_point() or param.dtype == torch.float64 or id(param) in originals:
            return False
        originals[id(param)] = (param, param.data)
        param.data = param.data.to(torch.float64)
        return True

    def narrow_parameter(param: Any) -> None:
        param.data = originals.pop(id(param))[1]

    def widen_buffers(module: Any) -> None:
        for sub in module.modules():
            for name, build in sub.__dict__.get("_zoo_derived", {}).items():
                buffer = sub._buffers[name]
                if id(buffer) not in buffers:
                    buffers[id(buffer)] = (buffer, buffer.dtype)
                    derived.append((buffer, buffer.data))
                    buffer.data = build(torch.float64).to(buffer.device)
            for tensor in sub.buffers(recurse=False):
                if tensor.is_floating_point() and tensor.dtype != torch.float64 and id(tensor) not in buffers:
                    buffers[id(tensor)] = (tensor, tensor.dtype)
                    tensor.data = tensor.data.to(torch.float64)

    def widen(module: Any) -> None:
        with torch.no_grad(), torch._C.DisableTorchFunction():  # the tensors themselves, not the mode's copies
            widen_buffers(module)
            if not per_call:
                for param in module.parameters():
                    widen_parameter(param)

    def on_call(module: Any, args: Any) -> None:
        if waiting.pop(id(module), None) is not None:
            widen(module)
            for sub in module.modules():
                waiting.pop(id(sub), None)
        if scoped:
            with torch.no_grad(), torch._C.DisableTorchFunction():
                calls.setdefault(id(module), []).append(
                    [p for p in module.parameters(recurse=False) if id(p) in scoped and widen_parameter(p)]
                )

    def on_return(module: Any, args: Any, output: Any) -> None:
        stack = calls.get(id(module))
        if stack:
            with torch.no_grad(), torch._C.DisableTorchFunction():
                for param in stack.pop():
                    narrow_parameter(param)

    for module in modules:
        widen(module)
    hooks = []
    if waiting or scoped:
        hooks.append(torch.nn.modules.module.register_module_forward_pre_hook(on_call))
    if scoped:
        hooks.append(torch.nn.modules.module.register_module_forward_hook(on_return, always_call=True))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with _float64_mode(frozenset(scoped)):
            yield
    finally:
        for hook in hooks:
            hook.remove()
        torch.set_default_dtype(previous)
        with torch.no_grad():
            for param, data in list(originals.values()):
                param.data = data
            originals.clear()
            for tensor, dtype in buffers.values():
                tensor.data = tensor.data.to(dtype)
            for buffer, data in derived:
                buffer.data = data


def inputs_float64(example: Mapping[str, Any]) -> dict[str, Any]:
    """The example with its floating-point arrays as float64 (integer inputs unchanged)."""
    import numpy as np

    return {
        k: (np.asarray(v, dtype=np.float64) if np.issubdtype(np.asarray(v).dtype, np.floating) else v)
        for k, v in example.items()
    }
