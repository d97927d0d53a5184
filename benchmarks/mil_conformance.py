"""coremltools' own MIL op tests, run with zoo's interpreter as the runtime.

    .venv/bin/python benchmarks/mil_conformance.py            # the full selection (~16 min on 2 cores)
    .venv/bin/python benchmarks/mil_conformance.py --subset   # the first case of every test function
    .venv/bin/python benchmarks/mil_conformance.py --canary   # relu corrupted, sigmoid removed: must show

Prints passed / wrong / crashed / unsupported / ... per module and per test class
(see mil_conformance_plugin.py beside this script for what each outcome means), the wrong and
crashed cases one by one, and writes every case to --report (JSON). Goal: 0 wrong,
0 crashed; unsupported only for the ops the README lists as out of scope.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the selection: element-wise and layer ops, compression ops, states
MODULES = (
    "iOS14/test_activation.py",
    "iOS14/test_elementwise_binary.py",
    "iOS14/test_elementwise_unary.py",
    "iOS14/test_linear.py",
    "iOS14/test_normalization.py",
    "iOS14/test_reduction.py",
    "iOS14/test_tensor_operation.py",
    "iOS14/test_tensor_transformation.py",
    "iOS14/test_scatter_gather.py",
    "iOS14/test_conv.py",
    "iOS14/test_recurrent.py",
    "iOS16/test_constexpr_ops.py",
    "iOS17/test_quantization.py",
    "iOS18/test_compression.py",
    "iOS18/test_states.py",
)


def tests_dir() -> Path:
    import coremltools

    return Path(coremltools.__file__).parent / "converters" / "mil" / "mil" / "ops" / "tests"


def _env() -> dict[str, str]:
    """This directory importable in the workers: the pytest plugin lives beside this script."""
    here = str(Path(__file__).resolve().parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)}


def run(
    modules: list[str], subset: bool, canary: bool, report: Path, extra: list[str] | None = None, jobs: int = 1
) -> list[dict]:
    """Run the suite in ``jobs`` subprocesses, modules dealt out largest first (the plugin patches
    coremltools process-wide, so never in this process); every case's outcome, in module order."""
    groups: list[list[str]] = [[] for _ in range(max(1, jobs))]
    sizes = [0] * len(groups)
    for module in sorted(modules, key=lambda m: -(tests_dir() / m).stat().st_size):
        i = sizes.index(min(sizes))
        groups[i].append(module)
        sizes[i] += (tests_dir() / module).stat().st_size
    procs = []
    with tempfile.TemporaryDirectory() as tmp:  # coremltools' tests write into the working directory
        for i, group in enumerate(g for g in groups if g):
            args = [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "mil_conformance_plugin",
                "-q",
                "--no-header",
                "-p",
                "no:cacheprovider",
                "-rN",
            ]
            args += ["--zoo-report", str(report) + f".{i}", "-W", "ignore"]
            if subset:
                args.append("--zoo-subset")
            if canary:
                args.append("--zoo-canary")
            args += [str(tests_dir() / m) for m in group] + list(extra or [])
            work = Path(tmp) / str(i)
            work.mkdir()
            (work / "pytest.ini").write_text("[pytest]\n")  # not the project's settings (workers, filters)
            args[3:3] = ["-c", str(work / "pytest.ini")]
            procs.append(
                (
                    subprocess.Popen(args, cwd=work, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                    Path(str(report) + f".{i}"),
                )
            )
        results: list[dict] = []
        for proc, part in procs:
            proc.wait()
            if part.exists():
                results.extend(json.loads(part.read_text()))
                part.unlink()
    order = {m.replace(".py", ""): i for i, m in enumerate(modules)}
    results.sort(key=lambda r: order.get(r["module"], len(order)))
    report.write_text(json.dumps(results, indent=1))
    return results


def main() -> int:
    from mil_conformance_plugin import OUTCOMES, summarize
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", action="store_true", help="the first case of every test function only")
    parser.add_argument(
        "--canary", action="store_true", help="corrupt relu and remove sigmoid (the hook must show both)"
    )
    parser.add_argument("--modules", nargs="*", default=list(MODULES), help="test modules under coremltools' ops/tests")
    parser.add_argument("--report", type=Path, default=Path(tempfile.gettempdir()) / "zoo-mil-conformance.json")
    parser.add_argument("--classes", action="store_true", help="print the per-class table too")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel pytest processes")
    opts = parser.parse_args()

    console = Console()
    start = time.perf_counter()
    results = run(opts.modules, opts.subset, opts.canary, opts.report, jobs=opts.jobs)
    seconds = time.perf_counter() - start
    shown = [o for o in OUTCOMES if any(r["outcome"] == o for r in results)]
    for by in ("module",) + (("class",) if opts.classes else ()):
        table = Table(title=f"per {by}")
        table.add_column(by)
        for o in shown:
            table.add_column(o, justify="right")
        for key, row in sorted(summarize(results, by).items()):
            table.add_row(key, *[str(row[o]) if row[o] else "" for o in shown])
        console.print(table)
    totals = {o: sum(r["outcome"] == o for r in results) for o in OUTCOMES}
    console.print(f"{len(results)} cases in {seconds:.0f} s: " + ", ".join(f"{v} {k}" for k, v in totals.items() if v))
    for r in results:
        if r["outcome"] in ("wrong", "crashed", "other", "unreadable", "fp16-below-tolerance"):
            console.print(
                f"[bold]{r['outcome']}[/] {r['id'].split('ops/tests/')[-1]}\n    {r['detail'][:300]}", highlight=False
            )
    unsupported: dict[str, int] = {}
    for r in results:
        if r["outcome"] == "unsupported":
            for op in r["detail"].split("op type(s) ")[-1].split(" in function")[0].split(", "):
                unsupported[op] = unsupported.get(op, 0) + 1
    if unsupported:
        console.print("unsupported op types: " + ", ".join(f"{k} ({v})" for k, v in sorted(unsupported.items())))
    console.print(f"goal: 0 wrong (now {totals['wrong']}), 0 crashed (now {totals['crashed']}); report: {opts.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
