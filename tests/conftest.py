"""Shared fixtures: the example plugin installed like a third-party one, and a CLI runner.

Every test writes to its own registry, cache and output directory.
"""

from __future__ import annotations

import gc
import os

os.environ.setdefault("TQDM_DISABLE", "1")  # coremltools progress bars
# One compute thread per test worker's share of the cores, for the worker and every process it starts
# (set before anything imports torch): with two workers on two cores each torch process otherwise
# takes both, and the two spin against each other. Measured 2026-12-04 on this machine: two kokoro
# small-fp16 exports side by side took 111 s with torch's default threads, 50 s with one each (one
# alone with two threads: 51 s).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
import subprocess
import sys
import textwrap
from pathlib import Path

import prewarmed
import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def _pip_install_target(src: Path, target: Path) -> None:
    """pip-install a copy of ``src`` (building in the source tree would leave build/ behind)."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / src.name
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--target",
                str(target),
                str(copy),
            ],
            check=True,
            capture_output=True,
        )


@pytest.fixture(scope="session")
def tiny_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/plugins/zoo_tiny installed with pip into its own directory (its entry point included)."""
    target = tmp_path_factory.mktemp("tiny-site")
    _pip_install_target(TESTS / "plugins" / "zoo_tiny", target)
    return target


def plugin_site(site: Path, name: str, source: str) -> Path:
    """``site`` holding one installed distribution whose zoo plugin ``name`` is the module
    ``zoo_<name>`` with ``source`` (run when zoo loads its plugins); returns ``site``."""
    dist = site / f"zoo_{name}-0.0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: zoo-{name}\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text(f"[zoo.plugins]\n{name} = zoo_{name}\n")
    (site / f"zoo_{name}.py").write_text(source)
    return site


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A distribution whose zoo plugin raises at import."""
    source = "raise RuntimeError('this plugin is broken on purpose')\n"
    return plugin_site(tmp_path_factory.mktemp("broken-site"), "broken", source)


class Zoo:
    """Runs `python -m zoo` (forked from a prewarmed process: tests/prewarmed.py) with an isolated
    registry, cache and output."""

    def __init__(self, workdir: Path, sites: list[Path]):
        self.workdir = workdir
        self.registry = workdir / "registry.toml"
        self.cache = workdir / "cache"
        self.out = workdir / "exports"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(str(s) for s in sites),
            "ZOO_REGISTRY": str(self.registry),
            "ZOO_CACHE": str(self.cache),
            "TQDM_DISABLE": "1",
            "COLUMNS": "200",
        }
        self.env.pop("ZOO_STRICT", None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "zoo", *args]

    def __call__(self, *args: str, check: bool | None = None, fresh: bool = False) -> subprocess.CompletedProcess:
        """``python -m zoo ARGS``: forked from a process that has imported torch and coremltools
        (tests/prewarmed.py), or with ``fresh`` a new interpreter (a test about what a process imports)."""
        # no wall-clock limit: a loaded machine is slow, not wrong (CI bounds the whole run)
        proc = prewarmed.run(list(args), self.workdir, self.env, fresh=fresh)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"zoo {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(*args), cwd=self.workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def packages(self) -> list[Path]:
        return sorted(self.out.rglob("*.mlpackage")) if self.out.exists() else []


@pytest.fixture
def zoo(tmp_path: Path, tiny_site: Path) -> Zoo:
    return Zoo(tmp_path, [tiny_site])


@pytest.fixture(scope="module")
def module_zoo(tmp_path_factory: pytest.TempPathFactory, tiny_site: Path) -> Zoo:
    """One Zoo (registry, stage cache, output) for a module's tests: an export one test made, the
    next builds on (a compressed variant reuses its base's stages)."""
    return Zoo(tmp_path_factory.mktemp("zoo"), [tiny_site])


@pytest.fixture
def write_plugin(tmp_path: Path):
    """Write a throwaway plugin module and return its entry point."""
    from importlib.metadata import EntryPoint

    site = tmp_path / "plugin-site"
    site.mkdir(exist_ok=True)
    sys.path.insert(0, str(site))
    written = []

    def write(name: str, source: str) -> EntryPoint:
        (site / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return EntryPoint(name=name, value=name, group="zoo.plugins")

    yield write
    sys.path.remove(str(site))
    for name in written:
        sys.modules.pop(name, None)


#: test files by their time in one run of the suite (seconds: `pytest --durations=0` summed per file,
#: 2026-12-04, two workers with one torch thread each and the tests' `zoo` commands prewarmed),
#: longest first: xdist hands files out in collection order, so the long ones start first and the
#: short ones fill the other worker's time (with xdist's default order, by test count, kokoro's
#: two-test fp16 file started last and ran alone for ~5 min)
LONGEST_FIRST = (
    "test_kokoro_export_fp16.py",  # 258: small-fp16, then small-fp16-mixed on its stages
    "test_compress_gates.py",  # 151: a smooth small kokoro exported, recompressed and judged by a recogniser
    "test_matrix.py",  # 116: spawned workers and a local Ray cluster
    "test_trust.py",  # 95 in many short tests
    "test_qwen3_speaker_export.py",  # 93: four small exports, runs
    "test_kokoro_export.py",  # 87
    "test_compress.py",  # 84
    "test_gates.py",  # 82
    "test_pocket_checkpoints.py",  # 81: four small exports (one 8 layers deep), 27 checkpoints' components
    "test_mil_conformance.py",  # 73
    "test_export.py",  # 67
    "test_integrity.py",  # 58
    "test_pocket_export.py",  # 55
    "test_mil_ops.py",  # 49
    "test_vibevoice_export.py",  # 47
    "test_eval.py",  # 46
    "test_publish.py",  # 17
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order kept


def pytest_collection_finish(session) -> None:
    """Every object alive once the test modules are imported (torch, coremltools, the fixtures'
    modules) moves to the collector's permanent generation: coremltools calls ``gc.collect()`` after
    each conversion, and walking those objects was 0.185 of a tiny conversion's 0.24 s (cProfile,
    2026-12-04). tests/mil/test_mil_ops.py alone: 37.6 -> 24.0 s; ``make test-fast`` 98.8 -> 86.9 s.
    Objects the tests create are collected as before."""
    gc.freeze()
