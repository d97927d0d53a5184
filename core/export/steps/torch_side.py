"""The stages that run torch: each component's reference level (parity data and calibration), the
plugin's constants, its whole-loop parity cases, and conversion."""

from __future__ import annotations

from pathlib import Path

from ...host.session import ModelSession
from ...validation import checks as validation
from ...validation import parity
from ...validation.checks import Check
from ..stages import CALIBRATION_FILE, CONVERTED, PARITY_FILE, TORCH_SIDE, Stages, read_checks, write_checks


def reference_stage(stages: Stages, session: ModelSession, component: str) -> Path:
    """The ``reference`` level of one component (levels/reference.py): its checks, the parity data
    every later level executes the package on, and the measurements their bounds derive from."""

    def build(tmp: Path) -> None:
        from ...validation.levels import reference

        result = reference.check_component(
            session.model, session.variant, component, session.reference().model, session.traceables()[component]
        )
        parity.save(tmp / PARITY_FILE, result.cases)
        result.calibration.save(tmp / CALIBRATION_FILE)
        write_checks(tmp, result.checks)

    return stages.cached(f"parity:{component}", build, checked=True, variant_fields=TORCH_SIDE)


def constants_stage(stages: Stages, session: ModelSession) -> tuple[Path, dict[str, str]]:
    """The plugin's constants: (stage directory, {name: path relative to it})."""
    import json

    def build(tmp: Path) -> None:
        root = tmp.resolve()
        names = {name: path.relative_to(root).as_posix() for name, path in session.constants(tmp).items()}
        (tmp / "constants.json").write_text(json.dumps(names, indent=1, sort_keys=True))

    path = stages.cached("constants", build, variant_fields=TORCH_SIDE)
    return path, json.loads((path / "constants.json").read_text())


def loop_parity_stage(stages: Stages, session: ModelSession, constants: dict[str, Path]) -> list[Check]:
    """The plugin's whole-loop cases (optional hook), judged at the reference level."""

    def build(tmp: Path) -> None:
        runtime = session.torch_runtime(tmp, constants)
        write_checks(tmp, validation.loop_checks(session.loop_parity(runtime)))

    return read_checks(stages.cached("loop_parity", build, checked=True, variant_fields=TORCH_SIDE))


def convert_stage(stages: Stages, session: ModelSession, component: str) -> Path:
    def build(tmp: Path) -> None:
        out = tmp / f"{component}.mlpackage"
        saved = session.call(
            "convert",
            variant=session.target.uncompressed,
            component=component,
            functions=session.traceables()[component],
            out_path=out,
        )
        if saved is None or Path(saved).resolve() != out.resolve() or not out.exists():
            raise RuntimeError(f"convert must save the package at {out}, got {saved}")
        from ...coreml.tools import target_problem

        problem = target_problem(out, session.variant.target, component)  # checked, not declared
        if problem:
            raise RuntimeError(problem)
        import gc

        gc.collect()  # the converted program (a cyclic MIL graph holding every weight) goes now

    return stages.cached(f"convert:{component}", build, variant_fields=CONVERTED) / f"{component}.mlpackage"
