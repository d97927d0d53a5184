"""README.md tells the truth about the command line and says where its figures come from.

- every `zoo COMMAND ...` line of its code blocks names a command that exists, with flags that
  command's --help (or the global options) has; every flag it names in prose exists in some zoo
  command's help or in a benchmark script;
- every flag of every command's --help is documented with its command (a table row naming the
  command, or a `zoo COMMAND` line using the flag);
- every measured figure (seconds, minutes, bytes) stands in a paragraph, or right after one, that
  names its source (a benchmark script, a test or a `make` target) and the date it was measured.
Each check is run on a deliberately wrong README too, and must fail there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    import typer
    from typer.testing import CliRunner

    from zoo.core.cli.app import app

    runner = CliRunner()
    commands = sorted(typer.main.get_command(app).commands)  # every registered command: a new one is covered
    assert {"export", "run", "verify", "publish"} <= set(commands)
    texts = {name: runner.invoke(app, [name, "--help"], terminal_width=200).output for name in commands}
    for name in commands:  # a group's sub-commands' flags count as the group's (`zoo registry merge --into`)
        for sub in getattr(typer.main.get_command(app).commands[name], "commands", {}):
            texts[name] += runner.invoke(app, [name, sub, "--help"], terminal_width=200).output
    texts[""] = runner.invoke(app, ["--help"], terminal_width=200).output
    return texts


def _code(readme: str) -> str:
    return "\n".join(re.findall(r"```[^\n]*\n(.*?)```", readme, flags=re.S))


def unknown_flags(readme: str, helps: dict[str, str]) -> list[str]:
    """Commands and flags the README names that the command line does not have."""
    bad = []
    for line in _code(readme).splitlines():
        words = line.split("#")[0].split()
        if len(words) < 2 or words[0] != "zoo" or words[1].startswith("-"):
            continue
        if words[1] not in helps:
            bad.append(f"unknown command: {line.strip()}")
            continue
        bad += [
            f"zoo {words[1]} has no {f}"
            for f in FLAG.findall(line.split("#")[0])
            if f not in helps[words[1]] + helps[""]
        ]
    everywhere = " ".join(helps.values()) + " ".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "benchmarks").glob("*.py")
    )
    prose = re.sub(r"```.*?```", "", readme, flags=re.S)
    bad += [
        f"no command or benchmark has {f}"
        for f in sorted(set(re.findall(r"`(--[a-z][\w-]*)", prose)))
        if f not in everywhere
    ]
    return bad


def undocumented_flags(readme: str, helps: dict[str, str]) -> list[str]:
    """Flags of the command line the README does not document with their command."""
    rows = [r for r in readme.splitlines() if r.startswith("| ")]
    lines = [line.split("#")[0] for line in _code(readme).splitlines() if line.strip().startswith("zoo ")]
    inline = re.findall(r"`(zoo [^`]+)`", readme)
    missing = []
    for name, text in helps.items():
        label = name or "(global)"
        options = re.findall(r"^│\s+\*?\s*(--[a-z][\w-]*)", text, flags=re.M)  # the options panel's rows
        for flag in sorted(set(options) - {"--help"}):
            in_row = any(label in r.split("|")[1] and flag in r for r in rows)
            in_line = any(re.match(rf"zoo {re.escape(name)}\b", s.strip()) and flag in s for s in lines + inline)
            if not (in_row or (name and in_line)):
                missing.append(f"{label} {flag}")
    return missing


#: a measured figure: seconds, minutes, bytes or decibels, or a number said to be measured (a limit
#: written "at most"/"up to"/"≤" is not one)
FIGURE = re.compile(
    r"(?<![\w.≤<])(?<!at most )(?<!up to )\d[\d,]*(?:\.\d+)?\s?(?:s|min|MB|GB|KB|MiB|GiB|dB)(?![\w/])"
    r"|measured \d[\d.e-]*"
)
SOURCE = re.compile(r"benchmarks/\w+\.py|tests/[\w/]+\.py|`make \w+`")
DATE = re.compile(r"\b20\d\d-\d\d(?:-\d\d)?\b")


def unsourced_figures(readme: str) -> list[str]:
    """Paragraphs quoting a measured figure with no source and date in them or in the paragraph just
    before (a table or a follow-up paragraph may lean on the one introducing it)."""
    blocks = re.split(r"\n\s*\n", re.sub(r"```.*?```", "", readme, flags=re.S))
    cited = [bool(SOURCE.search(b) and DATE.search(b)) for b in blocks]
    return [
        f"{FIGURE.search(b).group(0)!r} in: {b.strip()[:100]}"  # type: ignore[union-attr]
        for i, b in enumerate(blocks)
        if FIGURE.search(b) and not (cited[i] or any(cited[max(0, i - 2) : i]))
    ]


def test_readme_names_only_commands_and_flags_that_exist(helps):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert unknown_flags(readme, helps) == []
    wrong = readme + "\n```bash\nzoo export MODEL --no-such-flag\nzoo frobnicate\n```\nSee `--made-up`.\n"
    assert unknown_flags(wrong, helps) == [
        "zoo export has no --no-such-flag",
        "unknown command: zoo frobnicate",
        "no command or benchmark has --made-up",
    ]


def test_readme_documents_every_flag_with_its_command(helps):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert undocumented_flags(readme, helps) == []
    without = readme.replace("| (global) | `--version` |", "| (global) | version |")
    assert undocumented_flags(without, helps) == ["(global) --version"]


def test_readme_figures_name_their_benchmark_and_date():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert unsourced_figures(readme) == []
    wrong = readme + "\n\n## Elsewhere\n\nIntro.\n\nMore.\n\nAn export took 42.0 s and 1,234 MB.\n"
    assert [f.split(" in: ")[0] for f in unsourced_figures(wrong)] == ["'42.0 s'"]
