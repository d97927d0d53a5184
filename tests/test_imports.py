"""Import analysis of the package as static tools see it (no install): the repository root is the
package ``zoo``, so every import of zoo's own modules inside core/ and plugins/ is relative and
must resolve to a file in the tree; module-level imports form no cycle; and `zoo --help` / `zoo list`
stay light (no torch, coremltools or numpy)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE_DIRS = ("core", "plugins")


def _modules() -> dict[str, Path]:
    """zoo's modules by dotted name (``zoo.core.cli``), from the files alone."""
    found = {"zoo": ROOT / "__init__.py", "zoo.__main__": ROOT / "__main__.py"}
    for top in PACKAGE_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("zoo",) + (parts[:-1] if parts[-1] == "__init__" else parts))
            found[name] = path
    return found


def _imports(name: str, path: Path, top_level_only: bool) -> list[tuple[str, int, bool]]:
    """(imported zoo module, line, relative?) for each import of a zoo module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` blocks are not run
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


def test_module_level_imports_have_no_cycle():
    modules = _modules()
    graph = {
        name: {t for t, _, _ in _imports(name, path, top_level_only=True) if t in modules and t != name}
        for name, path in modules.items()
    }
    # importing a package's submodule runs the package's __init__ first; an edge to a package that
    # only re-exports its own submodules is still an edge
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    # a package importing its own submodule (zoo.core -> zoo.core.spec) is how packages re-export
    real = [c for c in cycles if not all(c[i + 1].startswith(c[i] + ".") or c[i].startswith(c[i + 1] + ".") for i in range(len(c) - 1))]
    assert not real, real


def test_help_and_list_import_neither_torch_nor_coremltools_nor_numpy():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from zoo.core.cli import app\n"
        "r = CliRunner()\n"
        "assert r.invoke(app, ['--help']).exit_code == 0\n"
        "assert r.invoke(app, ['list']).exit_code in (0, 1)\n"
        "print(sorted(m for m in ('torch', 'coremltools', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_no_test_sets_a_wall_clock_limit():
    """A loaded machine is slow, not wrong: no test may fail on time (CI bounds the whole run)."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
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
