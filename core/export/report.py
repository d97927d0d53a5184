"""What an export reports: stage results, checks, the report object, and how the CLI shows them.

The pipeline produces an :class:`ExportReport` (also when it fails: it rides on
:class:`ExportFailed`) and tells a :class:`Reporter` about each stage as it runs;
``zoo export`` shows both with rich (:class:`RichReporter`, :func:`print_report`)
or prints ``ExportReport.as_dict()`` as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..validation.checks import Check

if TYPE_CHECKING:
    from rich.console import Console


class ExportFailed(RuntimeError):
    def __init__(self, message: str, report: "ExportReport"):
        super().__init__(message)
        self.report = report


@dataclass
class StageResult:
    stage: str
    status: str  # done | cached | failed | skipped
    seconds: float = 0.0
    detail: str = ""
    #: the process's peak resident memory when the stage ended (MB): the stage whose value
    #: jumps is the one that set the export's peak
    peak_rss_mb: float = 0.0


@dataclass
class ExportReport:
    model: str
    variant: str
    weights: str
    ok: bool = False
    export_id: str | None = None
    path: str | None = None
    level: str | None = None
    error: str | None = None
    stages: list[StageResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: an identical export was already registered: this report names it, nothing new was written
    reused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "id": self.export_id,
            "model": self.model,
            "variant": self.variant,
            "weights": self.weights,
            "path": self.path,
            "validation_level": self.level,
            "error": self.error,
            "stages": [s.__dict__ for s in self.stages],
            "validation": [c.record() for c in self.checks],
            "components": self.components,
            "warnings": self.warnings,
            "reused": self.reused,
        }


class Reporter:
    """Receives stage progress; the CLI shows it with rich, tests ignore it."""

    def plan(self, stages: list[str]) -> None:
        pass

    def begin(self, stage: str) -> None:
        pass

    def note(self, text: str) -> None:
        """Progress within a step that is not a stage (hashing local weights)."""

    def end(self, result: StageResult) -> None:
        pass


class RichReporter(Reporter):
    """Stage progress shown with rich on ``console`` (nothing when ``quiet``: ``--json``)."""

    def __init__(self, console: "Console", quiet: bool):
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.quiet = quiet
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=quiet,
        )
        self.task = self.progress.add_task("export", total=1)
        self.planned: set[str] = set()

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def plan(self, stages: list[str]) -> None:
        self.planned = set(stages)
        self.progress.update(self.task, total=len(stages), completed=0)

    def begin(self, stage: str) -> None:
        self.progress.update(self.task, description=stage)

    def note(self, text: str) -> None:
        self.progress.update(self.task, description=text)

    def end(self, result: StageResult) -> None:
        if result.stage in self.planned:
            self.progress.advance(self.task)
        if not self.quiet:
            mark = {"done": "[green]✓[/]", "cached": "[cyan]✓[/]", "failed": "[red]✗[/]"}.get(result.status, "·")
            note = " (cached)" if result.status == "cached" else ""
            self.console.print(
                f"{mark} {result.stage}{note} [dim]{result.seconds:.1f}s[/]"
            )  # a failure's message is said once, at the end


def print_report(report: "ExportReport", out: "Console", err: "Console") -> None:
    from rich.table import Table

    table = Table(title=f"export {report.model} ({report.variant}, weights {report.weights})", title_justify="left")
    for col in ("stage", "status", "seconds"):
        table.add_column(col, no_wrap=True)
    table.add_column("detail", overflow="fold")
    for s in report.stages:
        mark = {"done": "[green]✓ done[/]", "cached": "[cyan]✓ cached[/]", "failed": "[red]✗ failed[/]"}.get(
            s.status, s.status
        )
        said_below = s.status == "failed" and report.error and s.detail and s.detail in report.error
        table.add_row(s.stage, mark, f"{s.seconds:.1f}", "(the error below)" if said_below else s.detail)
    out.print(table)
    if report.checks:
        rows = []
        for c in report.checks:
            mark = {"passed": "[green]✓ passed[/]", "failed": "[red]✗ failed[/]", "skipped": "[yellow]- skipped[/]"}[
                c.status
            ]
            value = "" if c.value is None else f"{c.value:.3g}"
            threshold = "" if c.threshold is None else f"{c.threshold:.3g}"
            note = c.reason if (c.reason and (c.status != "passed" or not c.basis)) else c.basis
            rows.append((c.level, c.component, c.metric or "-", value, threshold, mark, note if c.metric else c.reason))
        if out.width >= 120:
            checks = Table(title="validation", title_justify="left")
            for col in ("level", "component", "metric", "value", "threshold", "status", "bound from / note"):
                checks.add_column(col)
            for row in rows:
                checks.add_row(*row)
            out.print(checks)
        else:  # a narrow terminal: one line a check, the note on its own indented line
            out.print("[bold]validation[/]")
            for level, component, metric, value, threshold, mark, note in rows:
                bound = f" {value} (bound {threshold})" if value else ""
                out.print(f"{mark} {level} {component} {metric}{bound}")
                if note:
                    out.print(f"    {note}", style="dim")
    for warning in report.warnings:
        err.print(f"[yellow]! {warning}[/]")
    if report.ok:
        if report.reused:
            out.print(
                f"[green]✓ already registered: {report.export_id}[/] at {report.path} (validation level: "
                f"{report.level}), made from identical inputs; `--force` exports again"
            )
        else:
            out.print(f"[green]✓ registered {report.export_id}[/] at {report.path} (validation level: {report.level})")
    else:
        out.print(f"[red]✗ export failed: {report.error}[/]")
