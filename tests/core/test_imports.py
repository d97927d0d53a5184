"""Import analysis of the package as static tools see it (no install): the repository root is the
package ``zoo``, so every import of zoo's own modules inside core/ and plugins/ is relative and
must resolve to a file in the tree; module-level imports form no cycle; and `zoo --help` / `zoo list`
stay light (no torch, coremltools or numpy)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE_DIRS = ("core", "plugins")


def _modules() -> dict[str, Path]:
    """zoo's modules by dotted name (``zoo.core.cli.app``), from the files alone."""
    found = {"zoo": ROOT / "__init__.py", "zoo.__main__": ROOT / "__main__.py"}
    for top in PACKAGE_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("zoo",) + (parts[:-1] if parts[-1] == "__init__" else parts))
            found[name] = path
    return found


def _imports(name: str, path: Path, top_level_only: bool) -> list[tuple[str, int, bool]]:
    """(imported zoo module, line, relative?) for each import of a zoo module in ``path``; imports
    inside functions count too unless ``top_level_only``; ``if TYPE_CHECKING:`` blocks never (not run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    checking = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if id(node) in checking or (isinstance(node, ast.If) and top_level_only):
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] + [f"{target}.{a.name}" for a in node.names]
                out.append((target, node.lineno, True))
                out.extend((t, node.lineno, True) for t in targets[1:])
            elif node.module and (node.module == "zoo" or node.module.startswith("zoo.")):
                out.append((node.module, node.lineno, False))
        elif isinstance(node, ast.Import):
            out.extend((a.name, node.lineno, False) for a in node.names if a.name == "zoo" or a.name.startswith("zoo."))
    return out


def test_imports_of_zoo_itself_are_relative_and_resolve_in_the_tree():
    modules = _modules()
    absolute, unresolved = [], []
    for name, path in modules.items():
        for target, line, relative in _imports(name, path, top_level_only=False):
            where = f"{path.relative_to(ROOT)}:{line}"
            if not relative:
                absolute.append(f"{where} imports {target} absolutely")
            elif target not in modules and target.rsplit(".", 1)[0] not in modules:
                unresolved.append(f"{where}: {target}")
    assert not absolute, absolute
    assert not unresolved, unresolved


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the zoo modules it imports, anywhere in it (functions included): a function-level
    import runs when the function does, so it can close a cycle as surely as a module-level one.
    ``from pkg import name`` is an edge to the submodule ``pkg.name`` where that is a module."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t, _, _ in _imports(name, path, top_level_only=False)}
        found = {t for t in targets if t in modules and t != name}
        # `from pkg import sub`: the edge is to the submodule (the package's __init__ runs too, but
        # that is the package -> submodule edge every re-export makes, excepted below)
        graph[name] = {t for t in found if not any(u.startswith(t + ".") for u in found)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of ``graph`` (each as a path back to its start), a package importing its own
    submodule to re-export it (zoo.core -> zoo.core.plugin.spec) excepted."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return [
        c
        for c in cycles
        if not all(c[i + 1].startswith(c[i] + ".") or c[i].startswith(c[i + 1] + ".") for i in range(len(c) - 1))
    ]


def test_imports_have_no_cycle_even_inside_functions():
    graph = _graph(_modules())
    assert not _cycles(graph), _cycles(graph)
    # the check can fail: one function-level import from the contract's leaf up into the pipeline
    # (which imports the contract) closes a cycle and is named
    closed = {**graph, "zoo.core.plugin.names": graph["zoo.core.plugin.names"] | {"zoo.core.export.pipeline"}}
    found = _cycles(closed)
    assert found and any("zoo.core.plugin.names" in c and "zoo.core.export.pipeline" in c for c in found)


def test_help_and_list_import_neither_torch_nor_coremltools_nor_numpy(tmp_path):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from zoo.core.cli.app import app\n"
        "r = CliRunner()\n"
        "assert r.invoke(app, ['--help']).exit_code == 0\n"
        "listed = r.invoke(app, ['list'])\n"
        "assert listed.exit_code == 0, listed.output\n"  # every plugin loads, the (empty) registry reads
        "print(sorted(m for m in ('torch', 'coremltools', 'numpy') if m in sys.modules))\n"
    )
    env = {**os.environ, "ZOO_REGISTRY": str(tmp_path / "registry.toml")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path, env=env
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_numba_is_imported_by_the_first_program_run_not_by_the_interpreter_module(tmp_path):
    """numba costs 0.2 s and 50 MB to import (as much again to set up): importing the interpreter and
    the validation levels leaves it out; rounding a value (what every fp16 op does) brings it in."""
    code = (
        "import sys, numpy as np\n"
        "import zoo.core.mil, zoo.core.validation\n"
        "print('numba' in sys.modules)\n"
        "from zoo.core.mil.program import round_to_fp16\n"
        "assert round_to_fp16(np.float32([1 + 2.0**-11]))[0] == 1\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out.split() == ["False", "True"]


def test_no_test_sets_a_wall_clock_limit():
    """A loaded machine is slow, not wrong: no test may fail on time (CI bounds the whole run)."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0].replace(" ", "")
            off = ("dead" + "line=None") in code  # hypothesis's per-example limit turned off: required, below
            if ("time" + "out=") in code or (("dead" + "line") in code and not off):  # spelt apart: not this line
                offenders.append(f"{path.name}:{number}: {line.strip()}")
        if ("import " + "hypothesis") in text or ("from " + "hypothesis") in text:
            # hypothesis fails an example that takes over 200 ms unless its settings say otherwise
            settings = [line for line in text.splitlines() if line.strip().startswith("@settings(")]
            if not settings or any(("dead" + "line=None") not in s.replace(" ", "") for s in settings):
                offenders.append(f"{path.name}: hypothesis settings without dead" + "line=None")
    assert not offenders, offenders


def _reach_violations(name: str, path: Path) -> list[str]:
    """The imports of plugin module ``name`` that go past the door: anything of zoo that is not the
    façade (``zoo.core``), the kit (``zoo.core.kit``) or the plugin's own package."""
    own = ".".join(name.split(".")[:3])  # zoo.plugins.<model>
    modules = _modules()
    found = _imports(name, path, top_level_only=False)
    bad = []
    for target, line, _ in found:
        if target not in modules and any(t == target.rsplit(".", 1)[0] and ln == line for t, ln, _ in found):
            continue  # `from M import name`: a name of M, already judged as M
        allowed = (
            target in ("zoo.core", "zoo.core.kit") or target.startswith(("zoo.core.kit.", own + ".")) or target == own
        )
        if not allowed:
            bad.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line} imports {target}")
    return bad


def test_plugins_import_only_the_facade_and_the_kit_and_never_each_other(tmp_path):
    modules = _modules()
    bad = [
        v for name, path in modules.items() if name.startswith("zoo.plugins.") for v in _reach_violations(name, path)
    ]
    assert not bad, bad
    # the tests' plugin and the scaffold's template, imported absolutely as a third party's would be
    for path in [
        *(ROOT / "tests" / "plugins" / "zoo_tiny").rglob("*.py"),
        *(ROOT / "core" / "cli" / "templates" / "new_plugin" / "PACKAGE").glob("*.tmpl"),
    ]:
        # templates hold ${placeholders}: read as text, not parsed
        for module in re.findall(r"^\s*from (zoo[\w.]*) import", path.read_text(encoding="utf-8"), flags=re.M):
            assert module in ("zoo.core", "zoo.core.kit") or module.startswith("zoo.core.kit."), f"{path}: {module}"
    # the check can fail: a plugin module reaching into the pipeline, or into another plugin
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ...core.export.pipeline import Exporter\nfrom ..kokoro import plugin\nfrom ...core import "
        "ModelSpec\nfrom ...core.kit.ane import Conv1x1\n"
    )
    found = _reach_violations("zoo.plugins.pocket_tts.probe", probe)
    assert [f.split(" imports ")[1] for f in found] == ["zoo.core.export.pipeline", "zoo.plugins.kokoro"]
