"""The gate an export's compressed packages pass on speech (``zoo export --asr``): QoI, the share of
prompts the compressed packages say no worse than the uncompressed ones, at least ``QOI_MIN``."""

from __future__ import annotations

from typing import Any

from ..validation.checks import Check
from .evaluate import QOI_MIN


def qoi_check(result: Any) -> Check:
    """The ``eval:compressed`` check of an ``EvalResult`` holding ``export`` (compressed) and
    ``uncompressed`` error rates per prompt."""

    qoi = result.qoi("uncompressed")
    worse = [p.prompt.text for p in result.prompts if p.rate.get("export", 0) > p.rate.get("uncompressed", 0) + 1e-12]
    summary = result.summary()
    rate = "cer" if summary["export"]["wer"] is None else "wer"
    detail = (
        f"{len(result.prompts)} prompts, {rate.upper()} {summary['uncompressed'][rate]:.3f} uncompressed → "
        f"{summary['export'][rate]:.3f} compressed; "
        f"said worse: {len(worse)}"
        + (f" (first: {worse[0][:60]!r})" if worse else "")
        + f"; recogniser {result.asr.name} sha256 {result.asr_sha256[:12]}"
    )
    basis = (
        f"QoI ≥ {QOI_MIN:g}: the share of prompts the compressed packages say no worse than the uncompressed ones "
        f"(a ±10% tempo change of espeak-ng speech scores 0.857 with Whisper tiny.en: evaluate.QOI_MIN)"
    )
    ok = qoi is not None and qoi >= QOI_MIN
    return Check(
        "mil",
        "eval:compressed",
        "passed" if ok else "failed",
        "qoi_min",
        float("nan") if qoi is None else float(qoi),
        QOI_MIN,
        basis=basis,
        detail=detail,
    )
