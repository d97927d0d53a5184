"""The ``compress:<component>`` stage: the variant's compression of one converted package, with the bound
its policy (``compression.policy``) sets for the package levels."""

from __future__ import annotations

from pathlib import Path

from ...compression.policy import CompressionPolicy, PackageBound
from ...host.session import ModelSession
from ...util.hashing import tree_sha256
from ..publish import ValidatedPackage
from ..stages import CALIBRATION_FILE, PARITY_FILE, Stages


def compress_stage(
    stages: Stages,
    session: ModelSession,
    policy: CompressionPolicy,
    component: str,
    package: ValidatedPackage,
    parity_dir: Path,
) -> tuple[ValidatedPackage, PackageBound | None]:
    """The variant's compression of one converted package (``compression.compress``): the compressed
    package, and the bound its outputs are judged by at the package levels (``policy.package_bound``).
    ``mixed`` measures each weight's effect on the parity examples (``parity_dir``'s parity file)."""
    import shutil

    from ...compression.compress import COMPRESSION_FILE, CompressionRecord, MixedTargets, compress_package
    from ...util.hashing import file_sha256
    from ...validation.calibration import Calibration

    parity_file = parity_dir / PARITY_FILE
    keep = session.model.component(component).uncompressed
    targets = None
    if policy.mixed:
        moved = Calibration.load(parity_dir / CALIBRATION_FILE).sensitivity.get(session.variant.precision)
        targets = policy.mixed_targets(component, moved)
    measure = not policy.chaotic(component)

    def progress(done: int, total: int) -> None:
        stages.reporter.begin(f"compress:{component} (measured {done}/{total} layers)")

    def build(tmp: Path) -> None:
        work = tmp / "source.mlpackage"  # compressed from a copy: the cached package is only read
        shutil.copytree(package.path, work)
        record = compress_package(
            work,
            tmp / f"{component}.mlpackage",
            session.variant.compression,
            keep,
            parity_file,
            progress if policy.mixed else None,
            targets or MixedTargets(),
            measure=measure,
        )
        shutil.rmtree(work)
        from ...coreml.tools import target_problem

        problem = target_problem(tmp / f"{component}.mlpackage", session.variant.target, component)
        if problem:  # e.g. grouped look-up tables (iOS18) in a variant declared iOS17
            raise RuntimeError(problem)
        record.save(tmp / COMPRESSION_FILE)

    extra = {
        "package": package.sha256,
        "uncompressed": list(keep),
        "parity": file_sha256(parity_file),
        "measure": measure,
        **({"targets": repr(targets)} if policy.mixed else {}),
    }
    root = stages.cached(f"compress:{component}", build, extra=extra)
    record = CompressionRecord.load(root / COMPRESSION_FILE)
    path = root / f"{component}.mlpackage"
    compressed = ValidatedPackage(path, tree_sha256(path), package.functions, record.as_dict())
    return compressed, policy.package_bound(component, record)
