"""Registry writes always parse to exactly what was meant.

Every shape a registry file can take (missing, schema only, an empty inline array, an inline array
of inline tables, an array of tables with comments, odd whitespace, CRLF line endings, behind a
symbolic link), then any sequence of exports, removals and concurrent writers (hypothesis): after
each step the file is parsed by tomllib, holds exactly the exports that should be there, and
`zoo verify` finds every one intact. Exports go through the real publish (staging, marker,
registry under the lock) and removals through `zoo rm`'s own deletion, on small stand-in packages.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
from pathlib import Path

import pytest
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.core.export.cache import StageCache
from zoo.core.export.publish import Bundle, Provenance, ValidatedPackage, publish
from zoo.core.registry.exportdir import delete_files
from zoo.core.registry.store import Registry, new_document
from zoo.core.registry.verify import verify
from zoo.core.util.hashing import tree_sha256


def _toml(value) -> str:
    """A value as inline TOML (how a hand-written registry may hold its entries)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return (
            ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
            if isinstance(value, float) and not math.isfinite(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _aot(entries: list[dict], comments: bool) -> str:
    """An array of tables with a comment before each (tomlkit renders each table; comments added)."""
    import tomlkit

    text = ""
    for entry in entries:
        doc = tomlkit.document()
        doc["exports"] = tomlkit.aot()
        doc["exports"].append(tomlkit.item(entry))
        text += ("\n# exported by hand, keep this comment\n" if comments else "\n") + tomlkit.dumps(doc)
    return text


SHAPES = {
    "missing": lambda entries: None,
    "schema only": lambda entries: "schema = 1\n",
    "documented header": lambda entries: __import__("tomlkit").dumps(new_document()),
    "empty inline array": lambda entries: "schema = 1\nexports = []\n",
    "spaced, commented empty array": lambda entries: (
        "# mine\nschema   =   1   # version\n\n\nexports=[ ]   # none yet\n\n"
    ),
    "inline array of inline tables": lambda entries: (
        "schema = 1\nexports = [\n  " + ",\n  ".join(_toml(e) for e in entries) + ",\n]\n"
    ),
    "array of tables with comments": lambda entries: "schema = 1\n" + _aot(entries, True),
    "CRLF line endings": lambda entries: ("schema = 1\n" + _aot(entries, False)).replace("\n", "\r\n"),
}
#: shapes that hold the seed entries (the others start empty)
WITH_ENTRIES = {"inline array of inline tables", "array of tables with comments", "CRLF line endings"}


class World:
    """A registry, its output directory and cache, and the ids that should be registered."""

    def __init__(self, root: Path, shape: str, symlinked: bool):
        self.root = root
        self.out = root / "exports"
        self.cache = StageCache(root / "cache")
        self.source = root / "source"
        self.source.mkdir()
        self.counter = 0
        self.expected: list[str] = []
        target = root / "real" / "registry.toml" if symlinked else root / "registry.toml"
        target.parent.mkdir(exist_ok=True)
        self.registry = Registry(target)
        seeds = [self.export() for _ in range(2)] if shape in WITH_ENTRIES else []
        text = SHAPES[shape]([e for e in Registry(target).read().get("exports", [])])
        if text is None:
            target.unlink(missing_ok=True)
        else:
            target.write_bytes(text.encode())
        self.expected = seeds if text is not None else []
        if text is None:
            for export_id in seeds:  # their entries are gone with the file: so are their directories
                import shutil

                shutil.rmtree(self.out / export_id)
        if symlinked:
            (root / "registry.toml").symlink_to(target)
            self.registry = Registry(root / "registry.toml")

    def export(self, seed: int = 0) -> str:
        self.counter += 1
        name = f"p{self.counter}-{seed}"
        package = self.source / f"{name}.mlpackage"
        (package / "Data").mkdir(parents=True)
        (package / "Manifest.json").write_text(json.dumps({"seed": seed, "n": self.counter}))
        (package / "Data" / "weight.bin").write_bytes(bytes([seed % 256, self.counter % 256]) * 64)
        constant = self.source / f"{name}.safetensors"
        constant.write_bytes(b"constants %d" % self.counter)
        bundle = Bundle(
            {"vocoder": ValidatedPackage(package, tree_sha256(package), ("main",))},
            {"embeddings": (constant, "embeddings.safetensors")},
            {"vocoder": constant},
        )
        provenance = Provenance(
            "tiny",
            {"name": "fp32", "precision": "fp32", "target": "iOS17", "options": {"seed": seed}},
            {"name": "tiny", "version": "1", "source_sha256": "0" * 64},
            {"kind": "random", "seed": seed},
            {"python": "3"},
        )
        validation = [
            {
                "level": "reference",
                "component": "vocoder",
                "status": "passed",
                "metric": "rel",
                "value": float("nan") if seed % 7 == 0 else 1e-9 * seed,
            }
        ]
        entry, _, _ = publish(
            bundle, provenance, "reference", validation, self.out, self.registry, self.cache, reuse_identical=False
        )
        return entry.id

    def check(self) -> None:
        text = self.registry.target.read_text(encoding="utf-8") if self.registry.target.exists() else "schema = 1\n"
        data = tomllib.loads(text)
        assert data["schema"] == 1
        assert sorted(e["id"] for e in data.get("exports", [])) == sorted(self.expected)
        entries, problems, _ = verify(Registry(self.registry.path))
        assert not problems, [p.as_dict() for p in problems]
        assert sorted(e.id for e in entries) == sorted(self.expected)
        assert (
            sorted(p.name for p in self.out.iterdir() if not p.name.startswith(".")) == sorted(self.expected)
            if self.out.exists()
            else not self.expected
        )


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("export"), st.integers(0, 1000)),
        st.tuples(st.just("rm"), st.integers(0, 1000)),
        st.tuples(st.just("concurrent"), st.integers(2, 3)),
    ),
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(sorted(SHAPES)), symlinked=st.booleans(), ops=OPS)
def test_any_sequence_of_exports_removals_and_writers_keeps_the_registry_exact(shape, symlinked, ops):
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp), shape, symlinked)
        world.check()
        for op, n in ops:
            if op == "export":
                world.expected.append(world.export(n))
            elif op == "rm" and world.expected:
                victim = world.expected[n % len(world.expected)]
                removed = world.registry.remove(
                    [victim], lambda entries: [e.id for e in entries if not delete_files(world.registry, e).refused]
                )
                assert [e.id for e in removed] == [victim]
                world.expected.remove(victim)
            elif op == "concurrent":
                made: list[str] = []
                errors: list[BaseException] = []

                def one(seed: int) -> None:
                    try:
                        made.append(World.export(world, seed))
                    except BaseException as exc:  # noqa: BLE001 - reported below
                        errors.append(exc)

                threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                assert not errors, errors
                world.expected.extend(made)
            world.check()
        if symlinked:
            assert world.registry.path.is_symlink()


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_shape_takes_an_export_then_loses_it(shape, tmp_path):
    """Every shape once, deterministically (the property test samples them)."""
    world = World(tmp_path, shape, symlinked=False)
    world.expected.append(world.export(1))
    world.check()
    for victim in list(world.expected):
        world.registry.remove(
            [victim], lambda entries: [e.id for e in entries if not delete_files(world.registry, e).refused]
        )
        world.expected.remove(victim)
        world.check()
    world.expected.append(world.export(2))  # after the last removal: the shape that broke before
    world.check()
