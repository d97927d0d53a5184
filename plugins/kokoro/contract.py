"""Kokoro's run loop as data (the loop_contract hook): what a native app implements around the
predictor and decoder packages. ``loop.py`` is the code it describes; the tests run that loop on a
recording runtime and check its calls against this."""

from __future__ import annotations

from typing import Any, Mapping

from ...core import Call, Feed, FrontEnd, LoopContract, Repeat, Use, Voices
from . import languages
from .loop import MAX_DECODER_FRAMES, MAX_PHONEMES
from .options import RunConfig


def contract(constants: Mapping[str, Any]) -> LoopContract:
    cfg = RunConfig.load(constants["config"])
    buckets = tuple(f"tokens{b}" for b in cfg.buckets)
    limit = min(MAX_PHONEMES, max(cfg.buckets) - 2)
    cap = min(cfg.max_frames, MAX_DECODER_FRAMES)
    predictor = Call(
        "predictor",
        functions=buckets,
        choose=f"the smallest bucket holding the piece's token ids (buckets {', '.join(map(str, cfg.buckets))})",
        feeds=(
            Feed(
                "input_ids",
                "text",
                "the piece's phonemes as ids (config.json vocab; unknown characters dropped), "
                "zero-padded to the bucket",
            ),
            Feed("valid", "loop", "how many of input_ids are real"),
            Feed("style", "voice", "row min(phonemes in the piece, rows) - 1 of the voice's table [rows, 1, 256]"),
            Feed("speed", "setting", "--set speed (default 1.0)"),
        ),
        outputs=(
            Use("duration", "frames per token: round half to even, at least 1, the first `valid` only"),
            Use("d", "repeated along the frames by the durations (token k for duration[k] frames), transposed: en"),
            Use("t_en", "repeated along the frames by the durations: asr"),
        ),
    )
    decoder = Call(
        "decoder",
        feeds=(
            Feed("en", "output", "predictor's d aligned to frames [1, C, frames]"),
            Feed("asr", "output", "predictor's t_en aligned to frames [1, 512, frames]"),
            Feed("style", "voice", "the same style row as the predictor's"),
            Feed(
                "noise",
                "noise",
                f"standard normal [1, {cfg.samples_per_frame} * frames, {cfg.noise_channels}] "
                "(the harmonic source's noise; seeded)",
            ),
        ),
        outputs=(Use("audio", f"the piece's samples at {cfg.sample_rate} Hz, appended to the utterance"),),
    )
    return LoopContract(
        summary="Kokoro speaks text piece by piece: phonemes -> predictor (durations and features) -> "
        "alignment on the host -> decoder (audio).",
        front_end=FrontEnd(
            "g2p",
            "text -> phonemes by the language's G2P (misaki for English, Japanese and Mandarin; espeak-ng for the "
            "others), or phonemes given with --set phonemes; phonemes -> ids by config.json's vocab; split into "
            f"pieces of at most {limit} phonemes at punctuation, then at spaces",
            files=("config",),
            languages=tuple(languages.LANGUAGES),
        ),
        voices=Voices(
            "a bundled voice: a style table [rows, 1, 256] per name in voices.safetensors; the language defaults "
            "to the voice name's first letter",
            files=("voices",),
            names=tuple(cfg.voices),
        ),
        steps=(
            Repeat(
                "piece",
                (
                    Repeat(
                        "prediction",
                        (predictor,),
                        until=f"the piece's frames fit one decoder call (at most {cap}): a piece that does not is "
                        "halved at the punctuation nearest its middle and its first half predicted next, the second "
                        "queued as the next piece",
                    ),
                    decoder,
                ),
                until="every piece is spoken",
            ),
        ),
        result=f"float32 audio at {cfg.sample_rate} Hz: the pieces' samples concatenated",
    )
