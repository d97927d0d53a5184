"""The ``eval:compressed`` stage (``zoo export --asr``): the built-in prompts spoken through the compressed
and the uncompressed packages, both transcribed; judged by ``evaluation.gate.qoi_check``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...host.session import ModelSession
from ...plugin.spec import WeightsSource
from ...validation.checks import Check
from ..publish import ValidatedPackage
from ..stages import Stages, read_checks, write_checks


def weights_speak(weights: WeightsSource) -> bool:
    """Whether audio made with ``weights`` is speech a recogniser can score (random weights: not)."""
    return weights.kind != "random"


def compressed_eval_stage(
    stages: Stages,
    session: ModelSession,
    before: dict[str, ValidatedPackage],
    after: dict[str, ValidatedPackage],
    constants: dict[str, Path],
    shipped: dict[str, Path],
    asr: Path,
    asr_sha256: str,
) -> list[Check]:
    """``zoo eval``'s built-in prompts spoken through the compressed and the uncompressed packages
    (with the constants as the variant ships them, ``shipped``, and as exported, ``constants``; MIL
    interpreter, same voice, seed and settings), both transcribed by ``asr`` (its tree digest
    ``asr_sha256``); the check ``eval:compressed`` fails when the share of prompts the compressed
    packages say no worse (QoI) is under ``evaluate.QOI_MIN``. Prompts: every language the model
    speaks that the recogniser understands (an English-only recogniser: English). The recogniser
    is loaded only when the stage is not cached: its bytes and the model's prompts are the key."""
    from ...evaluation.evaluate import QOI_MIN, EvalResult, builtin_prompts, evaluate, prompts_digest, speaker
    from ...evaluation.gate import qoi_check
    from ...run.recogniser import Recogniser
    from ...runtime.backends import MilRuntime
    from .compress import shipped_digests

    model = session.model

    def build(tmp: Path) -> None:
        recogniser = Recogniser(asr, asr_sha256)
        prompts = builtin_prompts([lang for lang in model.languages if recogniser.multilingual or lang == "en"])
        if not prompts:
            raise ValueError(
                f"--asr {asr}: the recogniser understands none of the languages {model.name} speaks "
                f"({', '.join(model.languages)})"
            )

        def speaks(packages: dict[str, ValidatedPackage], files: dict[str, Path]) -> Any:
            runtime = MilRuntime({c: p.path for c, p in packages.items()}, files)
            return speaker(session.host, model, runtime)

        def progress(done: int, total: int, row: Any) -> None:
            stages.reporter.begin(f"eval:compressed ({done}/{total} prompts)")

        result = EvalResult(
            "", "mil", None, recogniser.path, recogniser.sha256, prompts_digest(prompts), False, "uncompressed"
        )
        evaluate(
            prompts,
            {"export": speaks(after, shipped), "uncompressed": speaks(before, constants)},
            recogniser,
            result,
            progress,
        )
        write_checks(tmp, [qoi_check(result)])

    extra = {
        "packages": {c: [before[c].sha256, after[c].sha256] for c in before},
        "asr": asr_sha256,
        "prompts": prompts_digest(builtin_prompts(list(model.languages))),  # the recogniser picks among these
        "qoi_min": QOI_MIN,
        "constants": shipped_digests(constants, shipped),
    }
    return read_checks(stages.cached("eval:compressed", build, checked=True, extra=extra))
