"""Typed records that cross a file boundary: frozen dataclasses with checked loading.

A plugin's variant options (``Variant.options``) and the run configuration its
``export_constants`` writes and its run loop reads back are each one frozen
dataclass deriving from :class:`Record`, shared by writer and reader, instead of
string keys. Loading checks every field: a missing key, an unknown key or a
value of the wrong type names the key and the file (a file read back from disk
is not trusted).

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``X | None``,
``list[...]``/``tuple[...]`` (stored as JSON arrays; a tuple field is
rebuilt as a tuple) and ``dict[...]`` (element types are not checked).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """A record that does not match its dataclass (names the key and the source)."""


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check(value, arg, where)
            except RecordError as exc:
                errors.append(str(exc))
        raise RecordError(errors[0] if errors else f"{where}: unexpected None")
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where} must be a number, not {type(value).__name__}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{where} must be an integer, not {type(value).__name__}")
        return value
    if hint in (bool, str):
        if not isinstance(value, hint):
            raise RecordError(f"{where} must be a {hint.__name__}, not {type(value).__name__}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"{where} must be an array, not {type(value).__name__}")
        args = typing.get_args(hint)
        element = args[0] if args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else None
        items = [_check(v, element, f"{where}[{i}]") if element is not None else v for i, v in enumerate(value)]
        return tuple(items) if (origin or hint) is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be a table, not {type(value).__name__}")
        return dict(value)
    raise TypeError(f"{where}: unsupported field type {hint!r}")


class Record:
    """Base of a frozen dataclass that is written to and read from JSON (or a mapping)."""

    @classmethod
    def from_mapping(cls: type[R], data: Mapping[str, Any], source: str = "") -> R:
        where = f"{source}: " if source else ""
        if not isinstance(data, Mapping):
            raise RecordError(f"{where}{cls.__name__} must be a table, not {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise RecordError(
                f"{where}unknown {cls.__name__} key(s) {', '.join(map(repr, unknown))}; known: {', '.join(fields)}"
            )
        values = {}
        for name, f in fields.items():
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise RecordError(f"{where}{cls.__name__} lacks the key {name!r}")
                continue
            values[name] = _check(data[name], hints[name], f"{where}{name!r}")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.as_dict(), indent=1, sort_keys=True, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RecordError(f"{path}: not a readable JSON file ({type(exc).__name__}: {exc})") from None
        return cls.from_mapping(data, str(path))
