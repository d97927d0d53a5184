"""The ``compress:<component>`` stage: the variant's compression of one converted package, with the bound
its policy (``compression.policy``) sets for the package levels."""

from __future__ import annotations

from pathlib import Path

from ...compression.policy import CompressionPolicy, PackageBound
from ...host.session import ModelSession
from ...util.hashing import file_sha256, tree_sha256
from ...validation.checks import Check
from ..publish import ValidatedPackage
from ..stages import CALIBRATION_FILE, PARITY_FILE, Stages, read_checks, write_checks


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


def compressed_constants_stage(
    stages: Stages, session: ModelSession, policy: CompressionPolicy, constants: dict[str, tuple[Path, str]]
) -> tuple[dict[str, tuple[Path, str]], list[Check]]:
    """The ``compress:constants`` stage: the tensors the model declares (``ModelSpec.compressed_constants``)
    stored as look-up tables (``compression.constants``). Returns every constant as the compressed
    variant ships it ({name: (path, path relative to the export)}: the files written here, the others
    as they were) and the ``mil`` check of each tensor's floor."""
    import json

    from ...compression.constants import compress_constants, constant_checks, declared_tensors

    declared = declared_tensors(session.model.compressed_constants, constants) if policy.compresses_constants else {}
    if not declared:
        return dict(constants), []

    def build(tmp: Path) -> None:
        written, records = compress_constants(constants, declared, session.variant.compression, tmp / "files")
        names = {name: path.relative_to(tmp).as_posix() for name, path in written.items()}
        (tmp / "constants.json").write_text(
            json.dumps({"files": names, "records": [r.as_dict() for r in records]}, indent=1, sort_keys=True)
        )
        write_checks(tmp, constant_checks(records))

    extra = {
        "declared": {name: list(t) for name, t in declared.items()},
        "sources": {name: file_sha256(constants[name][0]) for name in declared},  # the bytes compressed
    }
    root = stages.cached("compress:constants", build, checked=True, extra=extra, variant_fields=("compression",))
    written = json.loads((root / "constants.json").read_text())["files"]
    shipped = dict(constants)
    for name, rel in written.items():
        path = (root / rel).resolve()
        if name not in constants or not path.is_relative_to(root.resolve()) or not path.is_file():
            raise RuntimeError(f"compress:constants: {name} -> {rel} is not a file this stage wrote for this export")
        shipped[name] = (path, constants[name][1])
    return shipped, read_checks(root)


def shipped_digests(constants: dict[str, Path], shipped: dict[str, Path]) -> dict[str, str]:
    """The digests of the constants a variant ships other than as exported (``compress:constants``'s
    tables): part of the key of every stage that speaks with them."""
    return {name: file_sha256(path) for name, path in sorted(shipped.items()) if path != constants.get(name)}
