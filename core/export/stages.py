"""Export stages: each one timed and reported, and cached under a key of everything it depends on.

A stage key hashes the stage's name and extra inputs with the model, the plugin's
name, version and source digest, zoo.core's own source digest, the variant, the
weights' identity (for local weights, their sha256) and the tool versions: any
change to any of them is a cache miss. The stages before compression are keyed on
only the variant fields their hooks may depend on (``TORCH_SIDE``, ``CONVERTED``;
hookspecs.py), so a compressed variant reuses what its uncompressed variant built.
A cached stage is re-hashed when reused (``cache.StageCache.get``); one that fails
its hash is rebuilt and the export says so.
"""

from __future__ import annotations

import json
import platform
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

from ..plugin.spec import WeightsSource
from ..util.hashing import stable_hash, tree_sha256
from ..util.memory import peak_rss_mb, return_freed_memory
from ..validation.checks import Check
from .cache import StageCache
from .report import ExportReport, Reporter, StageResult

TOOLS = ("torch", "coremltools", "numpy")
#: the variant fields the torch-side stages (reference, constants, loop parity) are keyed on: their
#: hooks see the variant without its name, deployment target or compression (hookspecs.py)
TORCH_SIDE = ("precision", "options")
#: ... and the convert stages: the deployment target too
CONVERTED = ("precision", "target", "options")
#: what a component's reference stage leaves for the later stages: its parity cases (every package
#: level executes the package on them) and the measurements the bounds derive from
PARITY_FILE = "parity.safetensors.gz"
CALIBRATION_FILE = "calibration.json"

_CORE_DIGEST: str | None = None


def core_digest() -> str:
    """sha256 of zoo.core's own sources (computed once per process)."""
    global _CORE_DIGEST
    if _CORE_DIGEST is None:
        from ..util.hashing import python_sources_sha256

        _CORE_DIGEST = python_sources_sha256(Path(__file__).parent.parent)  # all of core/, not this sub-package
    return _CORE_DIGEST


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("zoo-tts",) + TOOLS:
        try:
            versions["zoo" if dist == "zoo-tts" else dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions["zoo" if dist == "zoo-tts" else dist] = "not installed"
    return versions


def weights_identity(weights: WeightsSource, note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """What identifies the weights in every stage key; local weights are hashed (``note`` is told
    how far, at most twice a second: a large directory takes minutes)."""
    ident: dict[str, Any] = {"kind": weights.kind}
    if weights.kind == "random":
        ident["seed"] = weights.seed
    elif weights.kind == "hub":
        ident.update(repo=weights.repo, revision=weights.revision)
    else:
        path = Path(weights.path or "")
        if not path.exists():
            raise FileNotFoundError(f"weights path {path} does not exist")
        last = [0.0]

        def progress(done: int, total: int, files: int, of: int) -> None:
            now = time.monotonic()
            if note is not None and (now - last[0] >= 0.5 or files == of):
                last[0] = now
                note(f"hashing --weights {path}: {files}/{of} files, {done / 1e6:,.0f} of {total / 1e6:,.0f} MB")

        ident.update(path=str(path), sha256=tree_sha256(path, progress=progress))
    return ident


class Stages:
    """Runs the stages of one export: ``stage(name)`` times and reports a step, ``cached(...)``
    reuses or builds a cached one. ``identity`` is what every key of this export includes."""

    def __init__(
        self, cache: StageCache, report: ExportReport, reporter: Reporter, identity: dict[str, Any], force: bool = False
    ):
        self.cache = cache
        self.report = report
        self.reporter = reporter
        self.identity = identity
        self.force = force

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Yields a dict whose "status" (done | cached | failed) and "detail" the step may set."""
        self.reporter.begin(name)
        start = time.perf_counter()
        info: dict[str, Any] = {"status": "done", "detail": ""}
        try:
            yield info
        except BaseException as exc:
            inner = getattr(exc, "_zoo_stage", None)  # raised in a stage nested in this one: said there
            detail = f"failed in {inner}" if inner else f"{type(exc).__name__}: {exc}"
            if inner is None:
                try:
                    exc._zoo_stage = name  # type: ignore[attr-defined]
                except AttributeError:
                    pass
            result = StageResult(name, "failed", time.perf_counter() - start, detail, peak_rss_mb())
            self.report.stages.append(result)
            self.reporter.end(result)
            raise
        result = StageResult(name, info["status"], time.perf_counter() - start, info["detail"], peak_rss_mb())
        return_freed_memory()  # what the stage freed goes back, not under the next stage's peak
        self.report.stages.append(result)
        self.reporter.end(result)

    def key(self, stage: str, extra: Any = None, variant_fields: tuple[str, ...] | None = None) -> str:
        identity = dict(self.identity)
        if variant_fields is not None:
            identity["variant"] = {k: identity["variant"][k] for k in variant_fields}
        return stable_hash({"stage": stage, "extra": extra, "core": core_digest(), **identity})

    def cached(
        self,
        stage: str,
        build: Callable[[Path], Any],
        checked: bool = False,
        extra: Any = None,
        variant_fields: tuple[str, ...] | None = None,
    ) -> Path:
        """Reuse a finished stage or build it; returns the stage directory. A ``checked`` stage
        (one that writes ``checks.json``) whose checks failed is shown as failed. ``variant_fields``:
        the only fields of the variant the stage depends on (default: all of it)."""
        key = self.key(stage, extra, variant_fields)
        with self.stage(stage) as info:
            path = None if self.force else self.cache.get(key)
            if path is not None:
                info["status"] = "cached"
            else:
                if self.cache.last_rejection and not self.force:
                    self.report.warnings.append(f"{stage}: the cached stage was rebuilt: {self.cache.last_rejection}")
                    info["detail"] = f"rebuilt: the cached copy was rejected ({self.cache.last_rejection})"
                path, _ = self.cache.put(
                    key, build, meta={"stage": stage, "model": self.identity.get("model")}, replace=self.force
                )
            if checked:
                failed = [c for c in read_checks(path) if c.status == "failed"]
                if failed:
                    info["status"] = "failed"
                    info["detail"] = "; ".join(
                        f"{c.component} {c.metric} {c.value:.3g} > {c.threshold:.3g}"
                        if c.value is not None and c.threshold is not None
                        else f"{c.component} {c.metric} {c.reason}"
                        for c in failed
                    )
            return path


CHECKS_FILE = "checks.json"


def write_checks(directory: Path, checks: list[Check]) -> None:
    (directory / CHECKS_FILE).write_text(json.dumps([c.record() for c in checks], indent=1))


def read_checks(directory: Path) -> list[Check]:
    return [Check(**record) for record in json.loads((directory / CHECKS_FILE).read_text())]
