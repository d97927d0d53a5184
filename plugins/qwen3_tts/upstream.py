"""Upstream's classes, imported without the rest of qwen-tts.

``qwen-tts`` 0.1.1 pins ``transformers==4.57.3`` and its package ``__init__`` imports the whole inference
stack (the speech tokenizers, torchaudio, sox). zoo runs transformers 5, so it is installed without its
dependencies (``make setup``: ``pip install --no-deps qwen-tts==0.1.1``) and only two files are imported:
``configuration_qwen3_tts`` and ``modeling_qwen3_tts``, under empty parent packages (their ``__init__``
never runs). The modeling module imports the speech tokenizer's module at its top; nothing the speaker
encoder or ``mel_spectrogram`` uses comes from it, so it is given an empty module of that name. Under
transformers 5.25 both files import cleanly otherwise (checked by the tests on every run).
"""

from __future__ import annotations

import sys
import types
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install --no-deps qwen-tts==0.1.1 and pip install 'zoo-tts[qwen3_tts]' (make setup does both)"
_PARENTS = ("qwen_tts", "qwen_tts.core", "qwen_tts.core.models", "qwen_tts.inference")
_UNUSED = "qwen_tts.inference.qwen3_tts_tokenizer"


@lru_cache(maxsize=None)
def modules() -> tuple[Any, Any]:
    """(``modeling_qwen3_tts``, ``configuration_qwen3_tts``) of the installed qwen-tts."""
    spec = find_spec("qwen_tts")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"qwen3_speaker's reference needs qwen-tts: {INSTALL_HINT}", name="qwen_tts")
    root = Path(list(spec.submodule_search_locations)[0])
    for name in _PARENTS:
        if name in sys.modules and not getattr(sys.modules[name], "__zoo_stub__", False):
            continue  # the real package is already imported (a full qwen-tts install): use it
        package = types.ModuleType(name)
        package.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        package.__zoo_stub__ = True  # type: ignore[attr-defined]
        sys.modules[name] = package
    if _UNUSED not in sys.modules:
        placeholder = types.ModuleType(_UNUSED)
        placeholder.Qwen3TTSTokenizer = None  # type: ignore[attr-defined]
        sys.modules[_UNUSED] = placeholder
    from importlib import import_module

    return (
        import_module("qwen_tts.core.models.modeling_qwen3_tts"),
        import_module("qwen_tts.core.models.configuration_qwen3_tts"),
    )


def encoder(config: dict[str, Any]) -> Any:
    """``Qwen3TTSSpeakerEncoder`` built from a config dict, in eval mode (weights as initialised)."""
    modeling, configuration = modules()
    return modeling.Qwen3TTSSpeakerEncoder(configuration.Qwen3TTSSpeakerEncoderConfig(**config)).eval()


def mel_spectrogram(audio: Any) -> Any:
    """Upstream's front end on 24 kHz float audio [N] exactly as ``extract_speaker_embedding`` calls it:
    the log-mel spectrogram [1, frames, 128] (torch)."""
    import torch

    from .config import FMAX, FMIN, HOP, MELS, N_FFT, SAMPLE_RATE, WINDOW

    modeling, _ = modules()
    y = torch.as_tensor(audio).reshape(1, -1)
    mels = modeling.mel_spectrogram(
        y, n_fft=N_FFT, num_mels=MELS, sampling_rate=SAMPLE_RATE, hop_size=HOP, win_size=WINDOW, fmin=FMIN, fmax=FMAX
    )
    return mels.transpose(1, 2)
