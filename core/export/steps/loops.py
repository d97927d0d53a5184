"""The ``loop:uncompressed`` and ``loop:compressed`` stages: the run loop on both sets of packages (MIL
interpreter), compared by ``validation.compressed_loop_checks``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...host.session import ModelSession
from ...plugin.spec import CompressedLoop
from ...validation import checks as validation
from ...validation.checks import Check
from ..publish import ValidatedPackage
from ..stages import CONVERTED, Stages, read_checks, write_checks


def compressed_loop_stage(
    stages: Stages,
    session: ModelSession,
    loop: CompressedLoop,
    before: dict[str, ValidatedPackage],
    after: dict[str, ValidatedPackage],
    constants: dict[str, Path],
    shipped: dict[str, Path],
    audio_bound: tuple[float, str] | None = None,
) -> list[Check]:
    """The whole run loop on the compressed packages and the constants as the variant ships them
    (``shipped``: some stored as look-up tables, ``compress:constants``) against the uncompressed
    packages and ``constants`` (both executed by the MIL interpreter, same text, seed and settings:
    ``ModelSpec.compressed_loop``). The uncompressed loops are a stage of their own, shared by every
    compression of those packages. ``audio_bound``: the mil bound (and basis) the loop's audio
    component was judged by."""
    from .compress import shipped_digests

    reference = uncompressed_loop_stage(stages, session, loop, before, constants)

    def build(tmp: Path) -> None:
        results = {label: _load_loop(reference, label) for label in ("seed0", "seed1")}
        compressed = _speak(session, loop, _runtime(after, shipped), seed=0)
        write_checks(
            tmp, validation.compressed_loop_checks(compressed, results["seed0"], results["seed1"], loop, audio_bound)
        )

    extra = {
        "packages": {c: [before[c].sha256, after[c].sha256] for c in before},
        "loop": repr(loop),
        "audio_bound": list(audio_bound or ()),
        "constants": shipped_digests(constants, shipped),
    }
    return read_checks(stages.cached("loop:compressed", build, checked=True, extra=extra))


def uncompressed_loop_stage(
    stages: Stages,
    session: ModelSession,
    loop: CompressedLoop,
    packages: dict[str, ValidatedPackage],
    constants: dict[str, Path],
) -> Path:
    """The compressed-loop check's basis: the uncompressed packages' loop with seeds 0 and 1
    (``seed0.npy`` / ``seed1.npy`` audio, ``frames.json``)."""
    import json

    import numpy as np

    def build(tmp: Path) -> None:
        frames = {}
        runtime = _runtime(packages, constants)  # loaded once for both seeds (vibevoice: ~3 s a load)
        for seed in (0, 1):
            runtime.reset_states()
            result = _speak(session, loop, runtime, seed)
            np.save(tmp / f"seed{seed}.npy", np.asarray(result.audio, np.float32))
            frames[f"seed{seed}"] = [int(result.frames), int(result.sample_rate), [int(n) for n in result.segments]]
        (tmp / "frames.json").write_text(json.dumps(frames))

    extra = {"packages": {c: p.sha256 for c, p in packages.items()}, "loop": repr(loop)}
    return stages.cached("loop:uncompressed", build, extra=extra, variant_fields=CONVERTED)


def _runtime(packages: dict[str, ValidatedPackage], constants: dict[str, Path]) -> Any:
    from ...runtime.backends import MilRuntime

    return MilRuntime({c: p.path for c, p in packages.items()}, constants)


def _speak(session: ModelSession, loop: CompressedLoop, runtime: Any, seed: int) -> Any:
    from ...plugin.run import RunOptions

    return session.call(
        "run_loop", runtime=runtime, text=loop.text, options=RunOptions(seed=seed, settings=dict(loop.settings))
    )


def _load_loop(directory: Path, label: str) -> Any:
    import json

    import numpy as np

    from ...plugin.run import RunResult

    frames, rate, segments = json.loads((directory / "frames.json").read_text())[label]
    return RunResult(
        np.load(directory / f"{label}.npy", allow_pickle=False),
        int(rate),
        int(frames),
        segments=tuple(int(n) for n in segments),
    )
