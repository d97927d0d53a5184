"""`zoo run`'s side of the contract: run settings (``--set``, typed once), the run options and result a
run loop receives and returns, and the ``Runtime`` protocol it calls components through."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

from .errors import UsageError

_SETTING_TYPES = {int: "integer", float: "number", str: "text", bool: "true/false"}


@dataclass(frozen=True)
class RunSetting:
    """One ``zoo run --set NAME=VALUE`` option of a model: its type, default and allowed range.

    ``default`` None means "the export's own value" (read from its constants at run time); a
    bound is inclusive; ``help`` says what the option does (shown by ``zoo info``)."""

    name: str
    type: type
    help: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    #: exclusive lower bound (e.g. "must be > 0")
    above: float | None = None
    #: the only values accepted (empty: any value of the type)
    choices: tuple[Any, ...] = ()
    #: how the default is chosen at run time when it is neither fixed nor the export's (shown by ``zoo info``)
    default_rule: str = ""

    def describe(self) -> str:
        parts = [_SETTING_TYPES.get(self.type, self.type.__name__)]
        if self.choices:
            parts.append("one of " + "|".join(map(str, self.choices)))
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.min is not None or self.max is not None:
            parts.append(
                f"in [{'-inf' if self.min is None else f'{self.min:g}'}, "
                f"{'inf' if self.max is None else f'{self.max:g}'}]"
            )
        rule = self.default_rule or "the export's"
        parts.append(f"default {self.default!r}" if self.default is not None else f"default: {rule}")
        return ", ".join(parts)

    def parse(self, text: str, model: str) -> Any:
        where = f"{model} run option {self.name}={text!r}"
        try:
            if self.type is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value: Any = text.lower() in ("true", "1", "yes")
            else:
                value = self.type(text)
        except ValueError:
            raise UsageError(f"{where}: expected {self.describe()}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{where}: expected a finite number")
        if (
            (self.min is not None and value < self.min)
            or (self.max is not None and value > self.max)
            or (self.above is not None and value <= self.above)
        ):
            raise UsageError(f"{where}: out of range ({self.describe()})")
        if self.choices and value not in self.choices:
            raise UsageError(f"{where}: expected {self.describe()}")
        return value


def parse_run_settings(
    settings: "Mapping[str, RunSetting] | tuple[RunSetting, ...]", raw: Mapping[str, str], model: str
) -> dict[str, Any]:
    """``--set`` values typed and range-checked; an unknown name is refused with the known ones
    (and a close match)."""
    import difflib

    known = {s.name: s for s in settings} if not isinstance(settings, Mapping) else dict(settings)
    parsed = {}
    for name, text in raw.items():
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listing = ", ".join(known) if known else "(none)"
            raise UsageError(f"unknown {model} run option {name!r}{hint} (known: {listing}; see `zoo info {model}`)")
        parsed[name] = known[name].parse(text, model)
    return parsed


@runtime_checkable
class Runtime(Protocol):
    """What a run loop (and a plugin's loop-parity cases) call components through: the torch
    traceables, zoo's MIL interpreter or CoreML behind one interface (``core/runtime``)."""

    #: "torch", "mil" or "coreml"
    backend: str
    #: the export's constants by name (``export_constants``' files)
    constants: Mapping[str, Path]

    def __call__(self, component: str, inputs: Mapping[str, Any], function: str = "main") -> dict[str, Any]:
        """One call of ``component``'s ``function`` on ``inputs``: its outputs by name."""
        ...

    def input_dtype(self, component: str, name: str, function: str = "main") -> Any:
        """The numpy dtype the function declares for input ``name`` (hold a large input in it)."""
        ...

    def reset_states(self) -> None:
        """Start every stateful component from its initial state again (a new utterance)."""
        ...

    def load_states(self, component: str, values: Mapping[str, Any], function: str = "main") -> None:
        """Set a stateful component's states (by the torch buffer names; the rest start at zero)."""
        ...


@dataclass
class RunOptions:
    """Options of ``zoo run`` handed to ``run_loop``."""

    voice: str | None = None
    seed: int = 0
    settings: dict[str, str] = field(default_factory=dict)
    #: called by the run loop with each piece of audio as soon as it is final (in order; the
    #: pieces concatenated are RunResult.audio): ``zoo run`` writes them to the WAV as they come
    on_audio: Callable[["np.ndarray"], None] | None = None
    #: called by the run loop as it works through a long input (a voice recording): seconds of
    #: input done and in all, so ``zoo run`` can show progress where no audio streams out
    on_progress: Callable[[float, float], None] | None = None
    #: called by the run loop with the timings of each piece (``zoo.core.Timing``: seconds from the
    #: start of the whole utterance, in order), right after that piece's audio is emitted
    on_timings: Callable[[list[Any]], None] | None = None
    #: ``settings`` typed and range-checked by the model's ``RunSetting``s (only those given): what a
    #: run loop reads (``typed_values``). Filled once, by the skeleton before ``run_loop`` runs.
    values: dict[str, Any] = field(default_factory=dict)

    def emit(self, audio: "np.ndarray") -> None:
        """Hand a finished piece of audio to ``on_audio`` (a loop calls this; it may be None)."""
        if self.on_audio is not None:
            self.on_audio(audio)

    def emit_progress(self, done: float, total: float) -> None:
        """Report ``done`` of ``total`` seconds of input worked through (``on_progress`` may be None)."""
        if self.on_progress is not None:
            self.on_progress(done, total)

    def emit_timings(self, timings: list[Any]) -> None:
        """Hand a piece's word (or piece) timings to ``on_timings`` (it may be None)."""
        if self.on_timings is not None and timings:
            self.on_timings(list(timings))

    def typed(self, schema: "tuple[RunSetting, ...]", model: str) -> dict[str, Any]:
        """The ``--set`` values typed and range-checked by the model's ``RunSetting``s (see
        :func:`parse_run_settings`); a bad one raises UsageError naming the option."""
        return parse_run_settings(schema, self.settings, model)

    def typed_values(self) -> dict[str, Any]:
        """``values``, for a run loop: refused when ``settings`` were given but never typed (a loop
        called around the core: use ``resolved``), so no ``--set`` is ever silently ignored."""
        if self.settings and not self.values:
            raise ValueError(f"run options {sorted(self.settings)} were not typed: pass RunOptions.resolved(...)")
        return self.values

    def resolved(self, schema: "tuple[RunSetting, ...]", model: str) -> "RunOptions":
        """These options with ``values`` typed from ``settings`` (once: options already resolved
        are returned as they are)."""
        if self.values or not (self.settings or schema):
            return self
        return dataclasses.replace(self, values=self.typed(schema, model))


@dataclass
class RunResult:
    """What ``run_loop`` returns: mono float audio in [-1, 1] and a frame count; for a model whose
    output is not audio (``ModelSpec.output``), ``values`` (an embedding vector, token codes), an
    empty ``audio`` and the frames it read (see :meth:`of_values`)."""

    audio: "np.ndarray"
    sample_rate: int
    frames: int
    info: dict[str, Any] = field(default_factory=dict)
    #: the frames of each unit the audio was made of, in order (kokoro: every token's duration,
    #: summing to ``frames``); empty when the loop has no such alignment. The compressed-loop
    #: check aligns two results by them (``CompressedLoop.aligned``)
    segments: tuple[int, ...] = ()
    #: the output of a model that does not make audio: a float vector (``embedding``) or integer
    #: codes (``tokens``); None for audio
    values: "np.ndarray | None" = None

    @classmethod
    def of_values(
        cls, values: "np.ndarray", frames: int, sample_rate: int, info: dict[str, Any] | None = None
    ) -> "RunResult":
        """The result of a loop whose output is ``values`` (no audio): ``frames`` it read at ``sample_rate``."""
        import numpy as np

        return cls(np.zeros(0, np.float32), sample_rate, frames, dict(info or {}), values=np.asarray(values))
