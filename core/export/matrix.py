"""`zoo export MODEL --checkpoint A,B|all --variant V1,V2|all`: a matrix of exports, one per cell
(checkpoint × variant), fanned out to worker processes (``-j N``) or Ray tasks (``--ray``).

A worker runs every stage of its cell but the registration (``Exporter.prepare``) and hands the
validated bundle — files in the shared stage cache — back to the driver, which alone copies it into
``--out`` and writes the registry, under its lock, as each cell finishes (``pipeline.register``): a
crash or Ctrl-C leaves every finished cell registered and nothing half-written, and running the same
command again reuses them (the registry's inputs digest). One failing cell never stops the others.

Workers and driver must see the same stage cache and ``--out`` (one machine: they do; a cluster:
shared storage mounted at the same path on every node). A worker checks both when it starts and
fails its cell with that message. Each worker writes its current stage to a small file under the
cache (``matrix/``), which the driver reads for its progress line.

Ray is an optional extra (``zoo-tts[ray]``): each cell is a task asking for the CPUs and memory the
cell needs — the plugin's declared estimate, else the peak RSS the last export of the same model and
variant recorded — so a cluster never packs two exports on a node that holds one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..host.plugins import PluginHost
from ..plugin.spec import ModelSpec, WeightsSource
from ..registry.store import Registry
from .cache import StageCache
from .pipeline import Exporter, register
from .report import ExportFailed, ExportReport, Reporter, StageResult

#: what a cell's Ray task asks for (MB) when nothing is known yet: no declaration by the plugin and
#: no earlier export of the model and variant recorded; the first one records its peak for the next
DEFAULT_MEMORY_MB = 2048


@dataclass(frozen=True)
class Cell:
    model: str
    variant: str
    checkpoint: str | None = None

    @property
    def name(self) -> str:
        return f"{self.checkpoint}/{self.variant}" if self.checkpoint else self.variant


@dataclass(frozen=True)
class Job:
    """Everything a worker needs for one cell (plain data: it is pickled to the worker)."""

    cell: Cell
    weights: WeightsSource
    out_dir: str
    cache_dir: str
    registry: str
    force: bool = False


@dataclass
class Outcome:
    """One cell's line of the final table."""

    cell: Cell
    status: str  # registered | reused | failed | skipped
    reason: str = ""
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    bytes: int = 0
    level: str | None = None
    export_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell.name,
            "checkpoint": self.cell.checkpoint,
            "variant": self.cell.variant,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 1),
            "peak_rss_mb": round(self.peak_rss_mb),
            "bytes": self.bytes,
            "level": self.level,
            "export_id": self.export_id,
        }


def _names(given: str | None, known: list[str], default: str | None, what: str) -> list[str | None]:
    if given is None:
        return [default]
    if given == "all":
        return list(known)
    names = [n.strip() for n in given.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        from ..plugin.errors import UsageError

        raise UsageError(f"unknown {what} {unknown[0]!r}; known: {', '.join(known)}")
    return list(dict.fromkeys(names))


def plan_cells(model: ModelSpec, checkpoints: str | None, variants: str | None) -> tuple[list[Cell], list[Outcome]]:
    """The cells of ``--checkpoint`` × ``--variant`` (comma lists or ``all``), and the skipped ones
    with their reason (a checkpoint the plugin cannot export yet). UsageError for an unknown name."""
    names = _names(checkpoints, list(model.checkpoints), model.default_checkpoint or None, "checkpoint")
    kinds = _names(variants, list(model.variants), model.default_variant, "variant")
    cells, skipped = [], []
    for checkpoint in names:
        reason = model.checkpoints[checkpoint].unsupported if checkpoint else ""
        for variant in kinds:
            cell = Cell(model.name, str(variant), checkpoint)
            if reason:
                skipped.append(Outcome(cell, "skipped", reason))
            else:
                cells.append(cell)
    return cells, skipped


# -- the worker ------------------------------------------------------------------------------------
class _StageFile(Reporter):
    """Writes the cell's current stage where the driver reads it (a few bytes, replaced atomically)."""

    def __init__(self, path: Path):
        self.path = path

    def begin(self, stage: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(stage)
            tmp.replace(self.path)
        except OSError:
            pass  # progress is a courtesy: never a cell's failure

    def end(self, result: StageResult) -> None:
        pass


def status_dir(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "matrix"


def _status_file(job: Job) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{job.cell.model}-{job.cell.name}")
    return status_dir(job.cache_dir) / f"{safe}.stage"


def _writable(directory: Path, what: str) -> str:
    """Why ``directory`` cannot be written by this worker ("" when it can)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".zoo-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return (
            f"this worker cannot write {what} {directory} ({exc.strerror or exc}); every node must see the same "
            f"{what} (shared storage mounted at the same path)"
        )
    return ""


def work(job: Job) -> tuple[Outcome, Any, dict[str, Any]]:
    """One cell in a worker: every stage but the registration. Returns (outcome, the Prepared bundle
    or None, the report as a dict). Never raises for the cell's own failure: it is the outcome."""
    from ..util.memory import peak_rss_mb

    start = time.perf_counter()
    outcome = Outcome(job.cell, "failed")
    for directory, what in ((Path(job.cache_dir), "stage cache"), (Path(job.out_dir), "--out")):
        problem = _writable(directory, what)
        if problem:
            outcome.reason = problem
            return outcome, None, {}
    stage_file = _status_file(job)
    stage_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        exporter = Exporter(
            PluginHost(),
            job.cell.model,
            job.cell.variant,
            job.weights,
            job.out_dir,
            Registry(job.registry),
            StageCache(Path(job.cache_dir)),
            job.force,
            _StageFile(stage_file),
            job.cell.checkpoint,
        )
        prepared = exporter.prepare(clean=False)
        report = exporter.report
    except ExportFailed as exc:
        outcome.reason = str(exc)
        report = exc.report
        prepared = None
    except Exception as exc:  # noqa: BLE001 - a cell's failure is its outcome, never the matrix's
        outcome.reason = f"{type(exc).__name__}: {exc}"
        report = None
        prepared = None
    finally:
        stage_file.unlink(missing_ok=True)
    outcome.seconds = time.perf_counter() - start
    outcome.peak_rss_mb = peak_rss_mb()
    if report is not None and not outcome.reason:
        outcome.status = "prepared" if prepared is not None else "reused"
        outcome.export_id = report.export_id
        outcome.level = report.level
    return outcome, prepared, report.as_dict() if report is not None else {}


# -- engines --------------------------------------------------------------------------------------
class Engine:
    """Runs ``work`` on jobs; ``finished()`` yields results as cells end."""

    def submit(self, job: Job) -> None:
        raise NotImplementedError

    def finished(self, timeout: float) -> list[tuple[Job, Any]]:
        """Results that arrived within ``timeout`` s: (job, work's return value or the exception)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _start_worker(parent: int, threads: int) -> None:
    """A ``-j`` worker: torch's compute threads limited to its share of the cores (``threads``, unless
    OMP_NUM_THREADS says otherwise: set before torch is imported), as Ray limits a 1-CPU task to one.
    N processes each taking every core spin against each other: two kokoro exports side by side took
    111 s with torch's default threads and 50 s with one thread each on this 2-core machine
    (2026-12-04; one export alone: 51 s).

    And a worker whose driver died (killed: it could not say so) exits within a second, mid-cell or
    idle: nothing of its cell was registered, and the same command redoes it from the stage cache."""
    import threading

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="zoo-parent-watch", daemon=True).start()


class LocalEngine(Engine):
    """``-j N``: N worker processes (spawned: no state shared with the driver), one cell per process
    so that each cell's memory goes back when it ends."""

    def __init__(self, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            max_tasks_per_child=1,
            initializer=_start_worker,
            initargs=(os.getpid(), max(1, (os.cpu_count() or 1) // workers)),
        )
        self.futures: dict[Any, Job] = {}

    def submit(self, job: Job) -> None:
        self.futures[self.pool.submit(work, job)] = job

    def finished(self, timeout: float) -> list[tuple[Job, Any]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(self.futures), timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for future in done:
            job = self.futures.pop(future)
            try:
                out.append((job, future.result()))
            except BaseException as exc:  # noqa: BLE001 - a worker that died is its cell's failure
                out.append((job, exc))
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class RayEngine(Engine):
    """``--ray``: each cell a Ray task with its CPU and memory request (``resources(job)``)."""

    def __init__(self, address: str, resources: Callable[[Job], tuple[float, int]]):
        import ray

        self.ray = ray
        if not ray.is_initialized():
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        self.resources = resources
        # a fresh worker process per cell (max_calls=1): each cell's memory goes back when it ends
        self.remote = ray.remote(max_calls=1)(work)
        self.refs: dict[Any, Job] = {}

    def submit(self, job: Job) -> None:
        cpus, memory_mb = self.resources(job)
        ref = self.remote.options(num_cpus=cpus, memory=memory_mb * 1024 * 1024).remote(job)
        self.refs[ref] = job

    def finished(self, timeout: float) -> list[tuple[Job, Any]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            job = self.refs.pop(ref)
            try:
                out.append((job, self.ray.get(ref)))
            except BaseException as exc:  # noqa: BLE001 - a task that died is its cell's failure
                out.append((job, exc))
        return out

    def close(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)


def memory_request(registry: Registry, model: ModelSpec, cell: Cell) -> int:
    """MB a cell's task asks for: the plugin's declared estimate for the variant, else the peak RSS
    the newest export of the same model and variant recorded (+25 %), else ``DEFAULT_MEMORY_MB``."""
    declared = dict(model.export_memory_mb).get(cell.variant)
    if declared:
        return int(declared)
    for entry in reversed(registry.exports()):
        peak = dict(entry.resources).get("peak_rss_mb")
        if entry.model == model.name and entry.variant_name == cell.variant and peak:
            return int(float(peak) * 1.25)
    return DEFAULT_MEMORY_MB


# -- the driver -----------------------------------------------------------------------------------
@dataclass
class Progress:
    done: int = 0
    running: dict[str, str] = field(default_factory=dict)  # cell -> its current stage
    queued: int = 0

    def line(self) -> str:
        stages = ", ".join(f"{c}: {s}" for c, s in sorted(self.running.items()))
        return f"{self.done} done, {len(self.running)} running, {self.queued} queued" + (
            f" — {stages}" if stages else ""
        )


def run_matrix(
    jobs: list[Job],
    engine: Engine,
    registry: Registry,
    on_progress: Callable[[Progress], None] = lambda _: None,
    on_outcome: Callable[[Outcome], None] = lambda _: None,
    parallel: int = 1,
) -> list[Outcome]:
    """Run every job on ``engine`` (at most ``parallel`` submitted at once: the rest wait in the
    driver, so a killed driver leaves no queue behind), registering each prepared cell as it ends."""
    if jobs:  # what an interrupted export (this driver's earlier run) abandoned in --out
        from .publish import remove_abandoned_exports

        remove_abandoned_exports(Path(jobs[0].out_dir), registry)
    queue = list(jobs)
    running: dict[str, Job] = {}
    outcomes: list[Outcome] = []
    progress = Progress(queued=len(queue))
    try:
        while queue or running:
            while queue and len(running) < parallel:
                job = queue.pop(0)
                engine.submit(job)
                running[job.cell.name] = job
            progress.queued = len(queue)
            progress.running = {name: _stage(job) for name, job in running.items()}
            on_progress(progress)
            for job, result in engine.finished(timeout=1.0):
                running.pop(job.cell.name, None)
                outcome = _finish(job, result, registry)
                outcomes.append(outcome)
                progress.done += 1
                on_outcome(outcome)
    finally:
        engine.close()
    return outcomes


def _stage(job: Job) -> str:
    try:
        return _status_file(job).read_text()[:60] or "starting"
    except OSError:
        return "starting"


def _finish(job: Job, result: Any, registry: Registry) -> Outcome:
    if isinstance(result, BaseException):
        return Outcome(job.cell, "failed", f"the worker died: {type(result).__name__}: {result}")
    outcome, prepared, report_dict = result
    if prepared is None:
        return outcome
    report = ExportReport(model=job.cell.model, variant=job.cell.variant, weights=job.weights.describe())
    try:
        register(prepared, Path(job.out_dir), registry, StageCache(Path(job.cache_dir)), report, Reporter())
    except Exception as exc:  # noqa: BLE001 - a cell that cannot be registered failed; the others go on
        outcome.status, outcome.reason = "failed", f"registering: {type(exc).__name__}: {exc}"
        return outcome
    outcome.status = "reused" if report.reused else "registered"
    outcome.export_id = report.export_id
    outcome.bytes = sum(int(c.get("bytes", 0)) for c in report.components)
    return outcome


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return {"cells": [o.as_dict() for o in outcomes], "counts": counts, "ok": "failed" not in counts}
