"""Execute a saved CoreML ML program (.mlpackage) with numpy.

The package's own bytes (its model specification and weight file) are read by
``reader.read_program``, then every operation is executed in program order by a
numpy kernel. Each op computes in float32 and its result is rounded to the dtype
the program declares, so an fp16 package shows fp16 rounding and overflow as
CoreML stores them. States (iOS18) are zero-initialised buffers, read by
``read_state`` and written by ``coreml_update_state``, exactly as the program
says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..plugin.names import state_identifier
from . import compiled
from .half import HalfMatrix, held
from .kernels import KERNELS
from .reader import ConstSpec, FunctionSpec, OpSpec, ReadError, read_program


class MilError(RuntimeError):
    """The program cannot be executed (unsupported op, bad input, kernel failure)."""


class UnsupportedOp(MilError):
    pass


#: ops that only move or select values of their (already rounded) inputs: their
#: results need no rounding and cannot introduce a non-finite value
DATA_MOVEMENT = frozenset(
    {
        "reshape",
        "transpose",
        "expand_dims",
        "squeeze",
        "slice_by_index",
        "slice_by_size",
        "slice_update",
        "concat",
        "stack",
        "split",
        "gather",
        "gather_along_axis",
        "gather_nd",
        "tile",
        "identity",
        "select",
        "crop",
        "reverse",
        "read_state",
        "coreml_update_state",
        "reshape_like",
    }
)


#: ops whose output values are each one of their inputs' values (or 0): given fp16 inputs, their
#: fp16 output needs no rounding (rounding it would return it unchanged, at the cost of a pass)
VALUE_SELECTING = frozenset({"relu", "maximum", "minimum", "reduce_max", "reduce_min"})


def _selects_fp16(op: OpSpec, fn: FunctionSpec) -> bool:
    """A value-selecting op whose every floating-point input is fp16 (its output is then fp16-exact)."""
    if op.type not in VALUE_SELECTING:
        return False
    floats = [
        fn.variables[name].dtype
        for name in op.inputs.values()
        if isinstance(name, str) and np.dtype(fn.variables[name].dtype).kind == "f"
    ]
    return bool(floats) and all(t is np.float16 for t in floats)


@dataclass
class _Step:
    index: int
    op_type: str
    name: str
    kernel: Callable[..., Any]
    args: list[tuple[str, str, Any]]  # (param, kind: const|var|list, payload)
    outputs: list[tuple[str, Any, tuple[int | None, ...] | None]]  # (name, numpy type, static shape or None)
    state: str | None = None  # read_state / coreml_update_state: the state name
    moves: bool = False  # a data-movement op (see DATA_MOVEMENT), or one selecting among fp16 values
    #: values no later step reads (nor the function returns): freed once this step ran, so
    #: memory holds the live values only, not every intermediate of the call
    release: tuple[str, ...] = ()
    #: a decompression step's outputs that only conv/linear weights read: output name -> the form
    #: they are held in, as a constant weight is (``_weight_form``: "half" or "taps")
    forms: dict[str, str] = field(default_factory=dict)

    def where(self, function: str) -> str:
        return f"op #{self.index} {self.op_type} {self.name!r} in function {function!r}"


@dataclass
class TensorInfo:
    name: str
    dtype: Any
    shape: tuple[int | None, ...] | None  # None: any rank (see ``reader.VarSpec``)


@dataclass
class MilFunction:
    name: str
    inputs: dict[str, TensorInfo]
    states: dict[str, TensorInfo]
    outputs: list[TensorInfo]
    steps: list[_Step] = field(default_factory=list)
    #: outputs the program produces directly from constants
    const_outputs: dict[str, Any] = field(default_factory=dict)
    #: where each constant is read: const op name -> [(step number, argument number)]
    const_reads: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def op_types(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.op_type] = counts.get(step.op_type, 0) + 1
        return counts


#: constants at least this large are shared between functions when their bytes are equal
SHARED_CONST_BYTES = 1 << 16


class _Constants:
    """A package's constants as the kernels take them (fp16 widened to float32), each held once.

    * Within a function, one constant read by several ops is read and widened once (an unrolled
      loop reads each weight once per iteration: vibevoice's sampler runs its head five times,
      103 weight reads of 23 weights, held as 790 MB instead of 164 MB before this).
    * Across the functions of a multifunction package, a weight stored once in the weight file
      (one blob, at one offset) is read and widened once (``shared``; one function: nothing to
      share); one written in the spec itself is small, below ``SHARED_CONST_BYTES``, or compared
      by its bytes.
    * The weight of a linear or a pointwise conv is not widened: it stays fp16, as a
      ``half.HalfMatrix`` whose products read it so (vibevoice's packages: 2.8 GB of float32
      weights were 1.4 GB stored).
    """

    def __init__(self, shared: bool):
        self.shared: dict[tuple, Any] | None = {} if shared else None
        self._by_var: dict[tuple[str, str], Any] = {}

    def value(self, const: ConstSpec, form: str = "") -> Any:
        """``const``'s value as a kernel takes it, in the ``form`` its reader asks (``_weight_form``):
        "half", a large fp16 weight stays fp16, as a ``HalfMatrix``; "taps", a float32 array laid
        out tap by tap (``_by_taps``); "" as it is stored, fp16 widened."""
        var = const.var
        shape = var.shape or ()
        keep = form == "half" and var.dtype is np.float16 and len(shape) >= 2 and all(d == 1 for d in shape[2:])
        taps = form == "taps" and np.dtype(var.dtype).kind == "f" and len(shape) >= 3
        held_as = "half" if keep else "taps" if taps else ""  # one entry per form a constant is held in
        held_value = self._by_var.get((var.name, held_as))
        if held_value is not None:
            return held_value
        widened = int(np.prod([int(d or 0) for d in shape])) * (
            4 if var.dtype is np.float16 else np.dtype(var.dtype).itemsize
        )

        def make(raw: Any) -> Any:
            if keep and HalfMatrix.holds(raw):
                return HalfMatrix(raw)
            return _by_taps(_widen(raw)) if taps else _widen(raw)

        if widened < SHARED_CONST_BYTES:
            return make(const.load())
        if self.shared is None:
            value = make(const.load())
        else:
            raw = None
            if const.blob is not None:
                key: tuple = (held_as, var.dtype, var.shape, const.blob)
            else:
                import hashlib

                raw = const.load()
                digest = hashlib.blake2b(np.ascontiguousarray(raw).view(np.uint8).data, digest_size=16).digest()
                key = (held_as, var.dtype, var.shape, digest)
            if key not in self.shared:
                self.shared[key] = make(const.load() if raw is None else raw)
            value = self.shared[key]
        self._by_var[(var.name, held_as)] = value
        return value

    def function_done(self) -> None:
        """Forget the finished function's variable names (the next function has its own)."""
        self._by_var.clear()


def _weight_form(op: OpSpec, param: str, fn: FunctionSpec) -> str:
    """The form a conv's or linear's weight is held in for its kernel (``_Constants.value``): a
    linear's, and a one-group conv's whose kernel is one tap (a matrix product), "half"; a
    one-group conv's with several taps, "taps"; any other constant "" (as stored)."""
    if param != "weight" or op.type not in ("linear", "conv"):
        return ""
    if op.type == "linear":
        return "half"
    groups = op.inputs.get("groups")
    if groups is not None:
        const = fn.consts.get(groups) if isinstance(groups, str) else None
        if const is None or int(const.load()) != 1:
            return ""
    weight = op.inputs[param]
    shape = fn.variables[weight].shape if isinstance(weight, str) and weight in fn.variables else None
    return "taps" if shape is not None and int(np.prod([d or 1 for d in shape[2:]])) > 1 else "half"


def _by_taps(weight: np.ndarray) -> np.ndarray:
    """A conv weight [O, C, K...] with the same values, laid out tap by tap in memory ([K..., O, C]
    C-ordered): the one-group conv kernel multiplies one tap's [O, C] matrix at a time and reads
    each where it lies; laid out as stored, each call copied every weight tap by tap (kokoro's
    decoder: 176 MB, 79 ms of a 0.95 s call, 2026-12-05)."""
    taps = np.ascontiguousarray(np.moveaxis(weight, (0, 1), (-2, -1)))
    return np.moveaxis(taps, (-2, -1), (0, 1))


def _widen(val: Any) -> Any:
    """fp16 constants held as float32 (kernels compute in fp32); lists element by element."""
    if isinstance(val, HalfMatrix):
        return val
    if isinstance(val, (list, tuple)):
        return type(val)(_widen(v) for v in val)
    if isinstance(val, np.ndarray) and val.dtype == np.float16:
        return compiled.widen_fp16(val)
    if isinstance(val, np.float16):
        return val.astype(np.float32)
    return val


@dataclass
class Recording:
    """One call of a function, run by ``MilProgram.record``: its outputs, and what it held right
    before some of its steps (step position -> (live values, copies of the states or None, the values
    this snapshot added to ``bytes``)), to re-run it from there (``MilProgram.replay``)."""

    function: str
    snapshots: dict[int, tuple[dict[str, Any], dict[str, np.ndarray] | None, list[Any]]] = field(default_factory=dict)
    bytes: int = 0
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


class MilProgram:
    """A loaded ML program; ``run`` executes one of its functions."""

    #: bytes of decompressed weights a program keeps between calls (see ``_execute``): a compressed
    #: package's weights are expanded once, not at every call, up to this much; past it the rest
    #: are expanded per call. The uncompressed package holds all of them widened anyway (vibevoice's
    #: largest, the decoder: 1.4 GB), so within this bound a compressed program needs no more
    #: memory than its uncompressed one.
    FOLD_BYTES = 2 << 30

    def __init__(self, path: Path, functions: dict[str, MilFunction]):
        self.path = path
        self.functions = functions
        self.first_nonfinite: str | None = None
        #: a constexpr step's outputs by (op type, the constants it reads): functions sharing a
        #: weight share its expansion too
        self._folded: dict[tuple, tuple[np.ndarray, ...]] = {}
        self._folded_bytes = 0

    # -- loading ---------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "MilProgram":
        path = Path(path)
        try:
            spec = read_program(path)
        except ReadError as exc:
            raise MilError(str(exc)) from None
        constants = _Constants(shared=len(spec.functions) > 1)
        functions = {}
        try:
            for name in list(spec.functions):
                functions[name] = cls._compile(spec.functions.pop(name), constants)
                constants.function_done()
        except ReadError as exc:  # a constant's bytes are read while compiling
            raise MilError(str(exc)) from None
        return cls(path, functions)

    @staticmethod
    def _compile(fn: FunctionSpec, constants: _Constants) -> MilFunction:
        inputs: dict[str, TensorInfo] = {}
        states: dict[str, TensorInfo] = {}
        for var in fn.inputs:
            if var.state:
                states[var.name] = TensorInfo(var.name, var.dtype, var.shape)
            else:
                inputs[var.name] = TensorInfo(var.name, var.dtype, var.shape)
        outputs = [TensorInfo(name, fn.variables[name].dtype, fn.variables[name].shape) for name in fn.outputs]
        mil_fn = MilFunction(fn.name, inputs, states, outputs)
        unsupported: dict[str, str] = {}
        readers: dict[str, list[str]] = {}  # variable -> the form each op reading it takes it in
        for index, op in enumerate(fn.ops):
            if op.has_blocks:
                unsupported.setdefault(op.type, f"op #{index} {op.name!r} (control flow with nested blocks)")
                continue
            kernel = KERNELS.get(op.type)
            if op.type in ("read_state", "coreml_update_state"):
                kernel = _state_kernel if op.outputs else _state_write
            if kernel is None:
                unsupported.setdefault(op.type, f"op #{index} {op.name!r}")
                continue
            args: list[tuple[str, str, Any]] = []
            state_name = None
            for param, value in op.inputs.items():
                if isinstance(value, list):
                    for v in value:
                        readers.setdefault(v, []).append("")
                    listed = [("const", constants.value(fn.consts[v])) if v in fn.consts else ("var", v) for v in value]
                    args.append((param, "list", listed))
                elif op.type in ("read_state", "coreml_update_state") and param in ("input", "state"):
                    state_name = value
                elif value in fn.consts:
                    const = fn.consts[value]
                    mil_fn.const_reads.setdefault(const.op_name, []).append((len(mil_fn.steps), len(args)))
                    args.append((param, "const", constants.value(const, _weight_form(op, param, fn))))
                else:
                    readers.setdefault(value, []).append(_weight_form(op, param, fn))
                    args.append((param, "var", value))
            outs = [(o.name, o.dtype, o.shape) for o in op.outputs]
            mil_fn.steps.append(
                _Step(
                    index,
                    op.type,
                    op.name,
                    kernel,
                    args,
                    outs,
                    state_name,
                    op.type in DATA_MOVEMENT or _selects_fp16(op, fn),
                )
            )
        if unsupported:
            where = "; ".join(f"{t} at {w}" for t, w in sorted(unsupported.items()))
            raise UnsupportedOp(
                f"zoo's MIL interpreter cannot execute op type(s) {', '.join(sorted(unsupported))} in function "
                f"{fn.name!r}: {where}"
            )
        returned = set(fn.outputs)
        for step in mil_fn.steps:
            if step.op_type.startswith("constexpr_"):
                for name, _, _ in step.outputs:
                    taken = set(readers.get(name, ()))
                    if name not in returned and len(taken) == 1 and taken <= {"half", "taps"}:
                        step.forms[name] = taken.pop()
        # outputs produced directly by consts still need a value
        mil_fn.const_outputs = {name: _widen(fn.consts[name].load()) for name in fn.outputs if name in fn.consts}
        _plan_releases(mil_fn)
        return mil_fn

    # -- execution -------------------------------------------------------------------
    def function(self, name: str = "main") -> MilFunction:
        if name not in self.functions:
            raise MilError(f"{self.path.name} has no function {name!r}; functions: {', '.join(self.functions)}")
        return self.functions[name]

    def constant(self, const: str, function: str) -> Any:
        """The value ops of ``function`` read as the constant ``const`` (fp16 held as float32), or
        None when no executed op reads it directly."""
        reads = self.function(function).const_reads.get(const)
        if not reads:
            return None
        step_no, arg_no = reads[0]
        return held(self.function(function).steps[step_no].args[arg_no][2])

    def first_read(self, consts: Iterable[str], function: str) -> int | None:
        """The position of the first step of ``function`` reading any of ``consts`` directly, or
        None: a ``replay`` after substituting them may start there."""
        fn = self.function(function)
        reads = [step for c in consts for step, _ in fn.const_reads.get(c, ())]
        return min(reads) if reads else None

    def substitute(self, const: str, value: Any, function: str | None = None) -> Any:
        """Make every op that reads the constant ``const`` (its op name) read ``value`` instead, in
        every function (or only in ``function``); returns what they read before (pass it back to
        undo). For measuring what a weight does to the outputs (the ``mixed`` compression's
        sensitivity runs, the compressed gate's equivalent noise)."""
        previous = None
        found = False
        for fn in [self.function(function)] if function is not None else self.functions.values():
            for step_no, arg_no in fn.const_reads.get(const, ()):
                step = fn.steps[step_no]
                param, kind, old = step.args[arg_no]
                previous, found = old, True
                step.args[arg_no] = (param, kind, _widen(value))
        self._folded.clear()  # keys hold the constants by id: a replaced one's id may come back
        self._folded_bytes = 0
        if not found:
            raise MilError(f"{self.path.name} reads no constant {const!r} in an executed op")
        return previous

    def make_state(self, function: str = "main", initial: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Zero-initialised state buffers (as CoreML allocates them), optionally overwritten.

        ``initial`` may name states as the torch buffers are named (``layers.0.cache.k``):
        coremltools turns such names into identifiers (``layers_0_cache_k``)."""
        fn = self.function(function)
        state = {}
        for name, info in fn.states.items():
            if info.shape is None or any(d is None for d in info.shape):
                raise MilError(f"function {function!r}: state {name!r} has a dynamic shape {info.shape}")
            state[name] = np.zeros(tuple(int(d or 0) for d in info.shape), dtype=_held(info.dtype))
        for name, value in (initial or {}).items():
            if name not in state:
                name = state_identifier(name)
            if name not in state:
                raise MilError(f"function {function!r} has no state {name!r}; states: {', '.join(state)}")
            declared = fn.states[name].dtype
            state[name][...] = _store(np.asarray(value).astype(declared))
        return state

    def run_fresh(
        self, inputs: Mapping[str, Any], function: str = "main", initial: Mapping[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """``run`` from fresh states (``make_state`` with ``initial``) where the function has any: one
        parity case, as the levels, the compressed gate and the mixed planner execute it."""
        state = self.make_state(function, initial=initial) if self.function(function).states else None
        return self.run(inputs, function, state)

    def run(
        self, inputs: Mapping[str, Any], function: str = "main", state: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        fn = self.function(function)
        env = self._bind(fn, function, inputs, state)
        self.first_nonfinite = None
        self._execute(fn, function, env, state, 0)
        return self._outputs(fn, env)

    @staticmethod
    def _outputs(fn: MilFunction, env: dict[str, Any]) -> dict[str, np.ndarray]:
        consts = fn.const_outputs
        return {
            info.name: np.asarray(consts[info.name] if info.name in consts else env[info.name]).astype(info.dtype)
            for info in fn.outputs
        }

    def record(
        self,
        inputs: Mapping[str, Any],
        function: str,
        initial: Mapping[str, Any] | None,
        at: Iterable[int],
        budget_bytes: int,
    ) -> "Recording":
        """``run_fresh``, keeping what the run held right before the steps at positions ``at`` (its
        live values and a copy of its states): ``replay`` re-runs the call from any step, after a
        ``substitute`` that changes nothing an earlier step reads, with the prefix's work skipped.

        The snapshots hold at most ``budget_bytes`` (a value several hold counted once; the
        inputs, the start's snapshot, beyond it): when the next would exceed it, every other one
        kept so far is dropped and from then on only every other point is taken, so those kept
        stay spread over the call (a replay pays the distance back to the nearest one). A point
        where a live value may share memory with a state buffer (a state just read, which a later
        write would change under it) is not kept."""
        fn = self.function(function)
        state = self.make_state(function, initial=initial) if fn.states else None
        env = self._bind(fn, function, inputs, state)
        recording = Recording(function)
        recording.snapshots[0] = (dict(env), {k: b.copy() for k, b in state.items()} if state else None, [])
        holders: dict[int, list[Any]] = {}  # id -> [value, snapshots holding it] (values past the inputs)
        inputs_held = {id(v) for v in env.values()}
        stride, seen = 1, 0

        def drop(index: int) -> None:
            _, states, held = recording.snapshots.pop(index)
            recording.bytes -= sum(b.nbytes for b in (states or {}).values())
            for value in held:
                entry = holders[id(value)]
                entry[1] -= 1
                if entry[1] == 0:
                    recording.bytes -= value.nbytes
                    del holders[id(value)]

        def snapshot(index: int, live: dict[str, Any], states: dict[str, np.ndarray] | None) -> None:
            nonlocal stride, seen
            seen += 1
            if (seen - 1) % stride:
                return
            if states and any(
                isinstance(v, np.ndarray) and np.may_share_memory(v, b) for v in live.values() for b in states.values()
            ):
                return
            held = [v for v in live.values() if id(v) not in inputs_held]
            extra = sum(v.nbytes for v in held if id(v) not in holders)
            extra += sum(b.nbytes for b in (states or {}).values())
            while recording.bytes + extra > budget_bytes and len(recording.snapshots) > 1:
                kept = sorted(i for i in recording.snapshots if i)
                for i in kept[1::2] if len(kept) > 1 else kept:
                    drop(i)
                stride *= 2
                extra = sum(v.nbytes for v in held if id(v) not in holders)
                extra += sum(b.nbytes for b in (states or {}).values())
                if (seen - 1) % stride:
                    return
            if recording.bytes + extra > budget_bytes:
                return
            for value in held:
                holders.setdefault(id(value), [value, 0])[1] += 1
            recording.bytes += extra
            copies = {k: b.copy() for k, b in states.items()} if states else None
            recording.snapshots[index] = (dict(live), copies, held)

        self.first_nonfinite = None
        self._execute(fn, function, env, state, 0, set(at) - {0}, snapshot)
        recording.outputs = self._outputs(fn, env)
        return recording

    def replay(self, recording: "Recording", step: int) -> dict[str, np.ndarray]:
        """The recorded call's outputs, re-run from its latest snapshot at or before ``step`` (from
        the start when there is none: the inputs are then the snapshot at step 0, always kept)."""
        fn = self.function(recording.function)
        start = max(i for i in recording.snapshots if i <= step)
        live, states, _ = recording.snapshots[start]
        env = dict(live)
        state = {k: b.copy() for k, b in states.items()} if states is not None else None
        self.first_nonfinite = None
        self._execute(fn, recording.function, env, state, start)
        return self._outputs(fn, env)

    @staticmethod
    def _bind(
        fn: MilFunction, function: str, inputs: Mapping[str, Any], state: dict[str, np.ndarray] | None
    ) -> dict[str, Any]:
        """The call's first values: its inputs checked against the function's and stored in the
        declared dtype."""
        missing = sorted(set(fn.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(fn.inputs))
        if missing or extra:
            raise MilError(
                f"function {function!r} takes inputs {sorted(fn.inputs)}; missing {missing}, unexpected {extra}"
            )
        if fn.states and state is None:
            raise MilError(
                f"function {function!r} is stateful ({', '.join(fn.states)}); pass state=program.make_state()"
            )
        env: dict[str, Any] = {}
        for name, info in fn.inputs.items():
            value = np.asarray(inputs[name])
            for axis, (want, got) in enumerate(zip(info.shape or (), value.shape)):
                if want is not None and want != got:
                    raise MilError(f"input {name!r}: expected shape {info.shape}, got {value.shape}")
            if info.shape is not None and len(info.shape) != value.ndim:
                raise MilError(f"input {name!r}: expected rank {len(info.shape)}, got shape {value.shape}")
            env[name] = (
                round_to_fp16(value)
                if info.dtype == np.float16 and value.dtype != np.float16
                else _store(value.astype(info.dtype, copy=False))
            )
        return env

    def _fold(self, key: tuple, values: tuple[Any, ...], finite: bool) -> None:
        """Keep a decompression step's outputs for the next calls, while within ``FOLD_BYTES`` (a
        non-finite expansion, ``finite`` False, is not kept: each call reports it)."""
        size = sum(v.nbytes for v in values)
        if self._folded_bytes + size > self.FOLD_BYTES or not finite:
            return
        self._folded[key] = values
        self._folded_bytes += size

    def _execute(
        self,
        fn: MilFunction,
        function: str,
        env: dict[str, Any],
        state: dict[str, np.ndarray] | None,
        start: int,
        at: set[int] = frozenset(),  # type: ignore[assignment]
        snapshot: Callable[..., None] | None = None,
    ) -> None:
        """Execute ``fn``'s steps from position ``start`` on ``env`` (updated in place); before the
        step at each position in ``at``, ``snapshot(position, env, state)``. Positions are those
        of ``fn.steps`` (and of ``const_reads``), not op numbers."""
        with np.errstate(all="ignore"):
            for position in range(start, len(fn.steps)):
                step = fn.steps[position]
                if snapshot is not None and position in at:
                    snapshot(position, env, state)
                fold = _fold_key(step)
                if fold is not None and fold in self._folded:
                    env.update(zip((name for name, _, _ in step.outputs), self._folded[fold]))
                    for name in step.release:
                        env.pop(name, None)
                    continue
                kwargs = {}
                for param, kind, payload in step.args:
                    if kind == "const":
                        kwargs[param] = payload
                    elif kind == "var":
                        kwargs[param] = env[payload]
                    else:
                        kwargs[param] = [p if k == "const" else env[p] for k, p in payload]
                if step.state is not None:
                    kwargs["_state"] = state
                    kwargs["_name"] = step.state
                    kwargs["_op"] = step.op_type
                try:
                    result = step.kernel(**kwargs)
                except MilError:
                    raise
                except Exception as exc:
                    raise MilError(f"{step.where(function)} failed: {type(exc).__name__}: {exc}") from exc
                results = result if isinstance(result, tuple) else (result,)
                if len(results) != len(step.outputs):
                    raise MilError(
                        f"{step.where(function)} produced {len(results)} outputs, program declares {len(step.outputs)}"
                    )
                all_finite = True  # of a decompression step's outputs (whether ``_fold`` may keep them)
                for value, (name, dtype, shape) in zip(results, step.outputs):
                    value = np.asarray(value)
                    if shape is not None and (
                        len(shape) != value.ndim or any(s is not None and s != v for s, v in zip(shape, value.shape))
                    ):
                        raise MilError(
                            f"{step.where(function)}: output {name!r} has shape {value.shape}, program declares {shape}"
                        )
                    finite: bool | None = None  # known from the rounding, else tested below
                    stored: Any
                    form = step.forms.get(name)
                    if form == "half" and HalfMatrix.holds(value):
                        # a decompressed weight only linear/pointwise-conv products read: kept as
                        # fp16, as a stored weight is (half); widening it doubled its memory
                        stored, finite = HalfMatrix(value), compiled.finite_fp16(value)
                    elif dtype == np.float16 and value.dtype in (np.float32, np.float64):
                        # moved values are already fp16-rounded; computed ones are rounded here
                        if step.moves:
                            stored = value.astype(np.float32, copy=False)
                        else:
                            stored, finite = rounded_and_finite(value)
                    else:
                        stored = _store(value.astype(dtype, copy=False))
                    if form == "taps" and isinstance(stored, np.ndarray) and stored.ndim >= 3:
                        stored = _by_taps(stored)  # laid out as a stored multi-tap weight is
                    if fold is not None:  # tested once, for the report below and for keeping it
                        finite = _value_finite(stored) if finite is None else finite
                        all_finite = all_finite and finite
                    if (
                        not step.moves
                        and self.first_nonfinite is None
                        and not (_value_finite(stored) if finite is None else finite)
                    ):
                        self.first_nonfinite = f"{step.where(function)} (output {name!r})"
                    env[name] = stored
                if fold is not None:
                    self._fold(fold, tuple(env[name] for name, _, _ in step.outputs), all_finite)
                for name in step.release:
                    env.pop(name, None)


def _fold_key(step: _Step) -> tuple | None:
    """A decompression step (``constexpr_*``, every input a constant): its key among the expansions
    a program keeps, or None for any other step."""
    if not step.op_type.startswith("constexpr_") or any(kind == "var" for _, kind, _ in step.args):
        return None
    if any(kind == "list" and any(k == "var" for k, _ in payload) for _, kind, payload in step.args):
        return None
    return (step.op_type, tuple((param, id(payload)) for param, _, payload in step.args))


def _plan_releases(fn: MilFunction) -> None:
    """Give each step the values whose last reader it is (or that it produced and nobody reads);
    the function's outputs are kept."""
    last: dict[str, int] = {}
    for i, step in enumerate(fn.steps):
        for _, kind, payload in step.args:
            if kind == "var":
                last[payload] = i
            elif kind == "list":
                for k, name in payload:
                    if k == "var":
                        last[name] = i
        for name, _, _ in step.outputs:
            last.setdefault(name, i)
    keep = {info.name for info in fn.outputs}
    releases: dict[int, list[str]] = {}
    for name, i in last.items():
        if name not in keep:
            releases.setdefault(i, []).append(name)
    for i, step in enumerate(fn.steps):
        step.release = tuple(sorted(releases.get(i, [])))


def _value_finite(value: Any) -> bool:
    """Is every value of an array, or of a weight held as fp16, finite (non-float: True)?"""
    if isinstance(value, HalfMatrix):
        return compiled.finite_fp16(value.bits.view(np.float16))
    return value.dtype.kind != "f" or _finite(value)


def _finite(value: np.ndarray) -> bool:
    """All values finite? One reduction; the element-wise test only if the sum is not finite."""
    total = np.add.reduce(value, axis=None, dtype=np.float64)
    return bool(np.isfinite(total)) or bool(np.isfinite(value).all())


def round_to_fp16(value: np.ndarray) -> np.ndarray:
    """float32 -> the nearest fp16 value (ties to even), held in float32; same result as
    ``value.astype(float16).astype(float32)``, in one compiled pass (``compiled.round_into``)."""
    return rounded_and_finite(value)[0]


def rounded_and_finite(value: np.ndarray) -> tuple[np.ndarray, bool]:
    """``round_to_fp16(value)`` and whether every rounded value is finite, known from the rounding's
    own pass (a value rounds to inf from 65520 on, and inf and NaN stay so): no second pass.

    Always a new array (a kernel's output may be its input: ``cast`` to fp16). Measured on 8 M
    values, a seventh of them below 2**-14 (2026-12-04, idle): 6.5 ms; numpy's cast there and back
    50 ms; the whole-array bit arithmetic this replaced (five passes, chunked to stay in the cache)
    50 ms. Rounding a fresh kernel output where it lies was slower, 15-18 ms (the compiled loop does
    not vectorize when it writes the memory it reads)."""
    source = np.asarray(value)
    if source.dtype == np.float32 and source.flags.c_contiguous:
        out = np.empty(source.shape, np.float32)
        finite = compiled.round_into(source, out)
    else:  # a new float32 copy, rounded where it lies
        out = np.array(source, dtype=np.float32, order="C")
        finite = compiled.round_into(out, out)
    return out, finite


def _store(value: np.ndarray) -> np.ndarray:
    """Keep declared-fp16 values as float32 holding fp16-rounded numbers (kernels compute in fp32)."""
    if value.dtype == np.float16:
        return compiled.widen_fp16(value)
    return value


def _held(dtype: Any) -> Any:
    """The dtype a value of the declared ``dtype`` is held in: fp16 as float32 (see ``_store``)."""
    return np.float32 if dtype == np.float16 else dtype


def _state_kernel(_state: dict[str, np.ndarray], _name: str, _op: str, value: Any = None, **_: Any) -> Any:
    """``read_state`` returns the buffer; ``coreml_update_state`` copies ``value`` into it. An fp16
    state is held as float32 (fp16 values, as every fp16 value here): the value written is an op's
    fp16-rounded output, so the write is a copy, not a conversion (vibevoice's tts_lm writes its
    caches 80 times per call: converting each to float16 and back cost 44 ms of a 0.6 s call)."""
    if _op == "read_state":
        return _state[_name]
    np.copyto(_state[_name], value, casting="unsafe")
    return value


def _state_write(**kwargs: Any) -> tuple:
    """A ``coreml_update_state`` whose result nothing reads (the package holds its write alone)."""
    _state_kernel(**kwargs)
    return ()


def load(path: str | Path) -> MilProgram:
    return MilProgram.load(path)
