"""The CLI as a user meets it: help, listing, failures, unknown names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import Zoo

from zoo.core.registry.store import Registry

NO_TORCH = """
import sys, runpy
sys.argv = ["zoo"] + sys.argv[1:]
try:
    runpy.run_module("zoo", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = [m for m in ("torch", "coremltools") if m in sys.modules]
assert not heavy, f"imported {heavy}"
print("NO-HEAVY-IMPORTS")
"""


def test_help_lists_every_command(zoo: Zoo):
    proc = zoo("--help", check=True)
    for command in ("list", "export", "verify", "info", "run", "eval", "rm", "new-plugin"):
        assert command in proc.stdout
    export_help = zoo("export", "--help", check=True).stdout
    for option in ("--variant", "--weights", "--random-weights", "--seed", "--out", "--force", "--json"):
        assert option in export_help


def test_every_command_help_names_its_arguments_and_explains_every_option():
    """Each command's --help: every argument named in the usage line (no empty ``{}``), flags shown
    without a value type (no ``<bool>``, --help included), and every option and argument with a
    help text; the check fails on a command that lacks one (an option added bare)."""
    import typer
    from typer.testing import CliRunner

    from zoo.core.cli.app import app

    group = typer.main.get_command(app)
    names = sorted(group.commands)
    assert names == ["eval", "export", "info", "list", "new-plugin", "publish", "registry", "rm", "run", "verify"]
    # a group's sub-commands are commands too (`zoo registry merge`)
    for name in list(names):
        for sub, command in getattr(group.commands[name], "commands", {}).items():
            group.commands[f"{name} {sub}"] = command
            names.append(f"{name} {sub}")

    def problems(name: str, command: typer.core.TyperCommand) -> list[str]:
        text = CliRunner().invoke(app, [*name.split(), "--help"], terminal_width=100).output
        found = [f"{name}: <bool> shown"] if "<bool>" in text else []
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        found += [f"{name}: unnamed argument in {usage.strip()!r}"] if "{}" in usage or "[]" in usage else []
        found += [f"{name}: {p.name} has no help" for p in command.params if not getattr(p, "help", None)]
        return found

    assert [p for name in names for p in problems(name, group.commands[name])] == []
    # the check can fail: an option without help text is named
    info = group.commands["info"]
    option = next(p for p in info.params if p.name == "as_json")
    kept, option.help = option.help, None
    try:
        assert problems("info", info) == ["info: as_json has no help"]
    finally:
        option.help = kept


def test_list_and_help_do_not_import_torch(zoo: Zoo):
    for args in (["list"], ["--help"], ["list", "--json"]):
        proc = subprocess.run(
            [sys.executable, "-c", NO_TORCH, *args], cwd=zoo.workdir, env=zoo.env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert "NO-HEAVY-IMPORTS" in proc.stdout


def test_list_shows_plugins_with_version_and_hooks(zoo: Zoo):
    proc = zoo("list", check=True)
    assert "tiny" in proc.stdout and "0.2.0" in proc.stdout and "no exports" in proc.stdout
    data = json.loads(zoo("list", "--json", check=True).stdout)
    hooks = next(p for p in data["plugins"] if p["name"] == "tiny")["hooks"]
    assert "build_traceables" in hooks  # the table shows how many; zoo info names them
    assert "build_traceables" in zoo("info", "tiny", check=True).stdout


def _cell_heights(table, width: int = 80):
    """(column, lines) of every cell of a rich table laid out at ``width`` columns."""
    import io

    from rich.console import Console

    console = Console(width=width, file=io.StringIO())
    options = console.options.update_width(width)
    widths = table._calculate_column_widths(console, options)  # what rich gives each column at this width
    for column, column_width in zip(table.columns, widths):
        pad = table.padding[1] + table.padding[3]
        for cell in column.cells:
            yield (
                column.header or "",
                len(console.render_lines(cell, options.update_width(max(1, column_width - pad)), pad=False)),
            )


def test_list_and_info_read_at_80_columns(zoo: Zoo):
    """Short cells, long text on a row of its own, options as rows: no cell of `zoo list` or `zoo info
    MODEL` wraps past 3 lines at 80 columns, and no line is wider."""
    from zoo.core.cli import describe
    from zoo.core.host.plugins import PluginHost
    from zoo.core.plugin.names import COMPRESSION_SUMMARIES

    host = PluginHost()
    tables = [describe.plugins(host.plugins.values()), describe.models(host.models.values())]
    for spec in host.models.values():
        tables += [t for t in describe.variants(spec, COMPRESSION_SUMMARIES)]
        tables += [describe.checkpoints(spec)] if spec.checkpoints else []
        tables += [describe.run_settings(spec.run_settings)]
    tall = [(t.title, header, n) for t in tables for header, n in _cell_heights(t) if n > 3]
    assert not tall, tall
    # the check can fail: the old layout's options as JSON in a cell wrapped to 10 lines
    from rich.table import Table

    old = Table()
    for col in ("variant", "precision", "target", "options", "description"):
        old.add_column(col)
    kokoro = host.models.get("kokoro")
    if kokoro is not None:
        v = kokoro.variants["fp16"]
        old.add_row("fp16 (default)", v.precision, v.target, json.dumps(dict(v.options)), v.description)
        assert max(n for _, n in _cell_heights(old)) > 3
    zoo.env["COLUMNS"] = "80"
    for args in (["list"], *(["info", name] for name in host.models)):
        text = zoo(*args, check=True).stdout
        assert max(len(line) for line in text.splitlines()) <= 80, args


def test_broken_plugin_does_not_take_the_others_down(tmp_path, tiny_site, broken_site):
    zoo = Zoo(tmp_path, [tiny_site, broken_site])
    proc = zoo("list", check=True)
    assert "broken" in proc.stdout and "this plugin is broken on purpose" in proc.stdout
    assert "tiny" in proc.stdout and "✓ loaded" in proc.stdout
    strict = zoo("--strict", "list")
    assert strict.returncode != 0
    assert "broken" in strict.stderr


def test_unknown_model_exits_2_with_suggestion(zoo: Zoo):
    for command in (["export", "tiyn", "--random-weights"], ["info", "tiyn"], ["run", "tiyn", "hi", "-o", "x.wav"]):
        proc = zoo(*command)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "tiny" in proc.stderr and "Did you mean 'tiny'" in proc.stderr


def test_info_describes_the_model(zoo: Zoo):
    proc = zoo("info", "tiny", check=True)
    assert "encoder" in proc.stdout and "vocoder" in proc.stdout and "fp16" in proc.stdout


def test_bad_options_are_usage_errors(zoo: Zoo, tmp_path):
    assert zoo("export", "tiny", "--random-weights", "--weights", str(tmp_path)).returncode == 2
    assert zoo("export", "tiny", "--weights", str(tmp_path / "missing")).returncode == 2
    assert zoo("export", "tiny", "--random-weights", "--variant", "int4").returncode == 2
    assert zoo("export", "tiny").returncode == 2  # no hub repository: needs --weights or --random-weights
    assert zoo("run", "tiny", "hi", "-o", "x.wav", "--backend", "tpu").returncode == 2
    assert zoo("run", "tiny", "hi", "-o", "x.wav", "--set", "novalue").returncode == 2


def test_python_dash_m_works(zoo: Zoo):
    proc = subprocess.run([sys.executable, "-m", "zoo", "--version"], env=zoo.env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("zoo ")


#: (arguments, what the message must say): each exits 2 before any model loads. The torch backend
#: with --random-weights would build the model next, so reaching that point would take seconds and
#: end differently; the registry is empty, so a mil run could not start either.
USAGE_ERRORS = [
    (("run", "kokoro", "  ", "-o", "x.wav", "--backend", "torch", "--random-weights"), "TEXT is empty"),
    (
        ("run", "kokoro", "hi", "-o", "x.wav", "--backend", "torch", "--random-weights", "--set", "sped=1"),
        "did you mean 'speed'",
    ),
    (
        ("run", "kokoro", "hi", "-o", "x.wav", "--backend", "torch", "--random-weights", "--set", "speed=0"),
        "speed='0': out of range",
    ),
    (
        ("run", "pocket_tts", "hi", "-o", "x.wav", "--backend", "torch", "--random-weights", "--set", "max_tokens=-5"),
        "max_tokens='-5': out of range",
    ),
    (
        (
            "run",
            "pocket_tts",
            "hi",
            "-o",
            "x.wav",
            "--backend",
            "torch",
            "--random-weights",
            "--set",
            "temperature=warm",
        ),
        "temperature='warm': expected number",
    ),
    (
        ("run", "vibevoice", "hi", "-o", "x.wav", "--backend", "torch", "--random-weights", "--set", "max_seconds=0"),
        "max_seconds='0': out of range",
    ),
    (
        ("run", "kokoro", "hi", "-o", "x.wav", "--backend", "torch", "--random-weights", "--voice", "me.wav"),
        "cannot clone a voice",
    ),
    (
        ("run", "pocket_tts", "hi", "-o", "x.wav", "--backend", "torch", "--random-weights", "--voice", "me.wav"),
        "me.wav: no such WAV file",
    ),
    (("run", "kokoro", "hi", "-o", ".", "--backend", "torch", "--random-weights"), "is a directory"),
    (
        ("run", "kokoro", "hi", "-o", "x.wav", "--backend", "torch", "--random-weights", "--variant", "int4"),
        "no variant 'int4'",
    ),
    (("export", "tiny", "--random-weights", "--out", "a-file"), "--out a-file is a file"),
    (("--registry", ".", "list"), "is a directory"),
]


@pytest.mark.parametrize("args, message", USAGE_ERRORS, ids=[" ".join(a[:2] + a[-2:]) for a, _ in USAGE_ERRORS])
def test_usage_errors_exit_2_naming_the_value(zoo: Zoo, args, message):
    pytest.importorskip("kokoro")
    pytest.importorskip("pocket_tts")
    (zoo.workdir / "a-file").write_text("not a directory")
    proc = zoo(*args)
    text = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and message in text, (proc.returncode, text)
    assert "Traceback" not in proc.stderr and not (zoo.workdir / "x.wav").exists()


def test_info_lists_run_options_with_type_default_and_range(zoo: Zoo):
    pytest.importorskip("kokoro")
    data = json.loads(zoo("info", "kokoro", "--json", check=True).stdout)
    speed = next(s for s in data["run_settings"] if s["name"] == "speed")
    assert (speed["type"], speed["default"], speed["min"], speed["max"]) == ("float", 1.0, 0.1, 10.0)
    assert data["voices"] is None and data["clones_voices"] is False  # no export yet
    text = " ".join(zoo("info", "kokoro", check=True).stdout.split())
    assert "run options" in text and "phonemes" in text and "in [0.1, 10]" in text


def test_at_80_columns_ids_are_whole_and_skip_reasons_one_line(zoo: Zoo):
    zoo.env["COLUMNS"] = "80"
    report = zoo("export", "tiny", "--random-weights", "--out", str(zoo.out), check=True).stdout
    if sys.platform == "linux":  # the skip reason, on one line (macOS runs the level instead)
        assert any(
            line.strip() == "the CoreML runtime only runs on macOS (this is Linux)" for line in report.splitlines()
        )
    listing = zoo("list", check=True).stdout
    export_id = Registry(zoo.registry).exports()[0].id
    assert any(export_id in line for line in listing.splitlines())  # on one line, not cut with "…"
    assert max(len(line) for line in listing.splitlines()) <= 80


def test_random_weight_audio_is_flagged(zoo: Zoo):
    proc = zoo("run", "tiny", "hi", "-o", str(zoo.workdir / "a.wav"), "--random-weights", check=True)
    assert "random weights" in " ".join(proc.stderr.split()) and "not speech" in proc.stderr
    data = json.loads(
        zoo("run", "tiny", "hi", "-o", str(zoo.workdir / "a.wav"), "--random-weights", "--json", check=True).stdout
    )
    assert data["random_weights"] is True


def test_help_shows_the_defaults(zoo: Zoo):
    top = " ".join(zoo("--help", check=True).stdout.split())
    assert "[default: ./registry.toml]" in top
    export = " ".join(zoo("export", "--help", check=True).stdout.split())
    assert "[default: the model's default]" in export and "[default: ~/.cache/zoo]" in export
    assert "<bool>" not in export  # plain flags, --help included


def test_main_shortens_openblas_spinning_unless_the_user_set_it(monkeypatch):
    """zoo's process sets OpenBLAS's idle-thread spin to its least before numpy loads (the MIL
    interpreter's own loops share the cores with those threads); a value already set is kept."""
    from zoo.core.cli import app as app_module

    seen = []
    monkeypatch.setattr(app_module, "app", lambda: seen.append(app_module.os.environ.get("OPENBLAS_THREAD_TIMEOUT")))
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    app_module.main()
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "9")
    app_module.main()
    assert seen == ["4", "9"]
