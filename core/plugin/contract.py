"""The loop contract: what a native app must implement around an export's packages, as data.

A plugin describes its run loop (``LoopContract``): the front end that turns the input into the
first values (a tokenizer, a G2P, a recording's features), where voices come from, and the sequence
of runtime events — package calls, state resets, state loads — grouped in blocks that repeat (per
piece, per frame, per window). ``zoo publish`` writes it into ``manifest.json`` and renders it on the
model card. It cannot drift from the code: the tests run each plugin's loop on a recording runtime
(``zoo.core.runtime.recording``) and :func:`check` its log against the contract — the order of
events (the contract compiled to a regular expression over the log), every call's inputs, outputs and
states by name, and every value's shape and dtype against the function it was passed to.

Plain data (no numpy): a contract is built by a plugin's ``contract.py`` from the export's constants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence, Union

#: where a call's input comes from (``Feed.source``), each said once for the card
SOURCES = {
    "text": "the text front end (token ids, phonemes, their embeddings)",
    "voice": "the voice: a bundled preset, or a clone made from a recording",
    "audio": "the input recording (or features computed from it)",
    "constant": "an array of a constants file",
    "output": "an output of an earlier call, fed back",
    "loop": "kept or computed by the loop (positions, lengths, caches it holds)",
    "noise": "random numbers the loop draws (seeded)",
    "setting": "a run setting (`zoo run --set`)",
}
FRONT_ENDS = ("tokenizer", "g2p", "bytes", "audio")


class ContractError(ValueError):
    """A contract that is not well formed, or that does not fit the functions it names."""


@dataclass(frozen=True)
class Feed:
    """One input of a call: its name in the package, where its value comes from (``SOURCES``), how."""

    input: str
    source: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ContractError(f"input {self.input!r}: source {self.source!r} is not one of {', '.join(SOURCES)}")


@dataclass(frozen=True)
class Use:
    """One output of a call and what the loop does with it."""

    output: str
    detail: str


@dataclass(frozen=True)
class Call:
    """One call of a package function.

    ``functions``: the function names it may call (several: ``choose`` says how one is picked);
    ``states``: the CoreML states the call reads and writes; ``optional``: when the call happens, if
    not always; ``overlaps``: set when the call may run beside the other events of its block (on a
    worker thread, in order among its own calls), saying how."""

    component: str
    feeds: tuple[Feed, ...]
    outputs: tuple[Use, ...]
    functions: tuple[str, ...] = ("main",)
    choose: str = ""
    states: tuple[str, ...] = ()
    optional: str = ""
    overlaps: str = ""

    def __post_init__(self) -> None:
        if not self.functions:
            raise ContractError(f"call of {self.component!r} names no function")
        if len(self.functions) > 1 and not self.choose:
            raise ContractError(f"call of {self.component!r} names several functions but not how one is chosen")
        for kind, names in (("input", [f.input for f in self.feeds]), ("output", [u.output for u in self.outputs])):
            if len(set(names)) != len(names):
                raise ContractError(f"call of {self.component!r} names an {kind} twice")


@dataclass(frozen=True)
class ResetStates:
    """Every stateful package starts from its initial states again."""

    detail: str
    optional: str = ""


@dataclass(frozen=True)
class LoadStates:
    """A stateful package's states are set to given values (e.g. a voice's prefilled cache)."""

    component: str
    detail: str
    optional: str = ""


@dataclass(frozen=True)
class Repeat:
    """A block of events run once per ``scope`` (a piece of text, a frame, a window) until ``until``;
    ``optional``: when it may run no time at all (else it runs at least once)."""

    scope: str
    steps: tuple["Step", ...]
    until: str
    optional: str = ""


Step = Union[Call, ResetStates, LoadStates, Repeat]


@dataclass(frozen=True)
class FrontEnd:
    """What turns the input into the first values: ``kind`` one of ``FRONT_ENDS``; ``files``: the
    constants it reads; ``languages``: the language codes it takes (empty: one, or any)."""

    kind: str
    detail: str
    files: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in FRONT_ENDS:
            raise ContractError(f"front end kind {self.kind!r} is not one of {', '.join(FRONT_ENDS)}")


@dataclass(frozen=True)
class Voices:
    """Where a voice comes from: ``names`` bundled in ``files``, and/or a recording (``detail`` says)."""

    detail: str
    files: tuple[str, ...] = ()
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoopContract:
    """A plugin's run loop as data (see the module docstring); ``result`` says what the loop returns."""

    summary: str
    front_end: FrontEnd
    steps: tuple[Step, ...]
    result: str
    voices: Voices | None = None
    version: int = 1

    def calls(self) -> Iterator[Call]:
        yield from _calls(self.steps)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``manifest.json``'s ``loop``): every step with its ``kind``."""
        return {
            "version": self.version,
            "summary": self.summary,
            "front_end": _plain(self.front_end),
            "voices": _plain(self.voices) if self.voices is not None else None,
            "steps": [_step_dict(s) for s in self.steps],
            "result": self.result,
            "sources": dict(SOURCES),
        }

    def pattern(self) -> str:
        """The regular expression the event tokens of one run (``Event.token``) must match."""
        return _regex(self.steps, ())


def _calls(steps: Sequence[Step]) -> Iterator[Call]:
    for step in steps:
        if isinstance(step, Call):
            yield step
        elif isinstance(step, Repeat):
            yield from _calls(step.steps)


def _plain(obj: Any) -> Any:
    from dataclasses import fields

    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = (
            [_plain(v) for v in value]
            if value and isinstance(value[0], (Feed, Use))
            else (list(value) if isinstance(value, tuple) else value)
        )
    return out


def _step_dict(step: Step) -> dict[str, Any]:
    if isinstance(step, Repeat):
        return {
            "kind": "repeat",
            "scope": step.scope,
            "until": step.until,
            "optional": step.optional,
            "steps": [_step_dict(s) for s in step.steps],
        }
    kind = {Call: "call", ResetStates: "reset_states", LoadStates: "load_states"}[type(step)]
    return {"kind": kind, **_plain(step)}


# -- the log a recording runtime keeps, and the check ------------------------------------------------
@dataclass(frozen=True)
class Event:
    """One runtime event of a run: ``kind`` call | reset | load; for a call, each input's and output's
    (shape, dtype) by name and the states the function has."""

    kind: str
    component: str = ""
    function: str = "main"
    inputs: Mapping[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    outputs: Mapping[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    states: tuple[str, ...] = ()

    @property
    def token(self) -> str:
        if self.kind == "call":
            return f"call:{self.component}.{self.function};"
        return "reset;" if self.kind == "reset" else f"load:{self.component};"


def _token(step: Step) -> str:
    if isinstance(step, Call):
        names = "|".join(re.escape(f) for f in step.functions)
        return f"call:{re.escape(step.component)}\\.(?:{names});"
    if isinstance(step, ResetStates):
        return "reset;"
    assert isinstance(step, LoadStates)
    return f"load:{re.escape(step.component)};"


def _regex(steps: Sequence[Step], floating: tuple[str, ...]) -> str:
    """``steps`` as a regular expression. ``floating``: tokens of overlapping calls declared by enclosing
    blocks, allowed before any event; a block's own overlapping calls are allowed before any of its
    events but the first (nothing overlaps what has not started) and at its end."""
    local = tuple(_token(s) for s in steps if isinstance(s, Call) and s.overlaps)
    parts, first = [], True
    for step in steps:
        if isinstance(step, Call) and step.overlaps:
            continue
        allowed = floating if first else floating + local
        first = False
        if isinstance(step, Repeat):
            parts.append(f"(?:{_regex(step.steps, allowed)})" + ("*" if step.optional else "+"))
        else:
            free = f"(?:{'|'.join(allowed)})*" if allowed else ""
            parts.append(f"(?:{free}{_token(step)})" + ("?" if step.optional else ""))
    if local:
        parts.append(f"(?:{'|'.join(local)})*")
    return "".join(parts)


def _runs(tokens: Sequence[str]) -> str:
    """A log's tokens with repeats folded (``call:flowlm.step; ×37``), for a message."""
    out: list[str] = []
    for token in tokens:
        if out and out[-1].split(" ×")[0] == token:
            head, _, count = out[-1].partition(" ×")
            out[-1] = f"{head} ×{int(count or 1) + 1}"
        else:
            out.append(token)
    return " ".join(out)


def fits(shape: Sequence[int], spec_shape: Sequence[int], flexible: Mapping[int, tuple[int, int]]) -> bool:
    """``shape`` is one the function takes: its declared shape, flexible axes within their range."""
    if len(shape) != len(spec_shape):
        return False
    for axis, (got, want) in enumerate(zip(shape, spec_shape)):
        if axis in flexible:
            low, high = flexible[axis]
            if got < low or (high != -1 and got > high):
                return False
        elif got != want:
            return False
    return True


def validate(contract: LoopContract, functions: Mapping[tuple[str, str], Any]) -> list[str]:
    """The contract against the functions it names (``functions``: (component, function) -> an object
    with ``inputs`` (TensorSpecs), ``outputs`` (names) and ``states`` (StateSpecs), e.g. a Traceable):
    each call names real functions, feeds every input, says what becomes of every output, and names
    the function's states — checked for calls a test run may not reach too."""
    problems = []
    for call in contract.calls():
        for name in call.functions:
            spec = functions.get((call.component, name))
            where = f"contract call {call.component}.{name}"
            if spec is None:
                problems.append(f"{where}: the export has no such function")
                continue
            inputs = [s.name for s in spec.inputs]
            if sorted(f.input for f in call.feeds) != sorted(inputs):
                problems.append(f"{where}: feeds {sorted(f.input for f in call.feeds)}, the function takes {inputs}")
            if sorted(u.output for u in call.outputs) != sorted(spec.outputs):
                problems.append(
                    f"{where}: says what becomes of {sorted(u.output for u in call.outputs)}, the function returns "
                    f"{list(spec.outputs)}"
                )
            states = sorted(s.name for s in spec.states)
            if sorted(call.states) != states:
                problems.append(f"{where}: names states {sorted(call.states)}, the function has {states}")
    return problems


def check(contract: LoopContract, log: Sequence[Event], functions: Mapping[tuple[str, str], Any]) -> list[str]:
    """What a run's ``log`` does that ``contract`` does not say (empty: nothing): the order of its
    events, each call's inputs, outputs and states by name, each value's shape and dtype against the
    function's declared inputs (``functions`` as in :func:`validate`), and every call the contract
    requires having happened."""
    problems = validate(contract, functions)
    tokens = [e.token for e in log]
    if re.fullmatch(contract.pattern(), "".join(tokens)) is None:
        problems.append(f"the run's events are not in the contract's order: {_runs(tokens)}")
    declared = {(c.component, f): c for c in contract.calls() for f in c.functions}
    for event in log:
        if event.kind != "call":
            continue
        where = f"call {event.component}.{event.function}"
        call = declared.get((event.component, event.function))
        if call is None:
            problems.append(f"{where}: the contract has no such call")
            continue
        if sorted(event.inputs) != sorted(f.input for f in call.feeds):
            problems.append(
                f"{where}: passed {sorted(event.inputs)}, the contract feeds {[f.input for f in call.feeds]}"
            )
        if sorted(event.outputs) != sorted(u.output for u in call.outputs):
            problems.append(
                f"{where}: returned {sorted(event.outputs)}, the contract uses {[u.output for u in call.outputs]}"
            )
        spec = functions.get((event.component, event.function))
        if spec is None:
            continue
        for tensor in spec.inputs:
            if tensor.name not in event.inputs:
                continue
            shape, dtype = event.inputs[tensor.name]
            if not fits(shape, tensor.shape, dict(tensor.flexible)):
                problems.append(
                    f"{where}: input {tensor.name} has shape {list(shape)}, the function takes {list(tensor.shape)}"
                )
            if _kind(dtype) != _kind(tensor.dtype):
                problems.append(f"{where}: input {tensor.name} is {dtype}, the function takes {tensor.dtype}")
    problems += _required(contract.steps, tokens)
    return list(dict.fromkeys(problems))


def _kind(dtype: str) -> str:
    """float and int inputs must not be confused; a float's width is the backend's business."""
    return "float" if dtype.startswith("float") else dtype


def _required(steps: Sequence[Step], tokens: Sequence[str]) -> list[str]:
    """Calls the contract makes unconditionally (in no optional call or block) that never happened."""
    problems = []
    for step in steps:
        if isinstance(step, Repeat) and not step.optional:
            problems += _required(step.steps, tokens)
        elif isinstance(step, Call) and not step.optional:
            if not any(re.fullmatch(_token(step), t) for t in tokens):
                problems.append(f"the contract's call {step.component}.{'|'.join(step.functions)} never happened")
    return problems
