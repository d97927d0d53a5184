"""qwen3_tts: Qwen3-TTS's speaker encoder (``qwen3_speaker``) exported to CoreML for the Neural Engine.

One component, ``encoder``: the ECAPA-TDNN of the Base checkpoints (TDNN, three SE-Res2Net blocks,
multi-layer aggregation, attentive statistics pooling, projection to the talker's width), laid out
channels-first [1, C, 1, T] with one function per clip bucket (3, 6, 12 s) sharing the weights. The
run loop takes a voice recording and returns its embedding (``--voice ref.wav -o speaker.npy``): the
front end (log-mel) in numpy, one call per window of up to 12 s.

Upstream is ``qwen-tts`` 0.1.1; only its two model files are imported (``upstream.py`` says how and
why). The folder is named for the whole model: the talker and the codec can join it later. Laid out
on the plugin skeleton, scaffolded by ``zoo new-plugin``; its own layers: ``encoder.py`` (the port),
``frontend.py`` (the numpy front end), ``config.py`` (upstream's facts).
"""

from __future__ import annotations

from ...core import Checkpoint, ComponentSpec, ModelPlugin, ModelSpec, Tolerance, standard_variants
from .config import CHECKPOINTS, DEFAULT_CHECKPOINT
from .options import FULL, SMALL, SpeakerOptions

__version__ = "0.1.0"

MODEL = "qwen3_speaker"
#: see the encoder's ComponentSpec
COMPRESSED_COSINE = 0.995


class Qwen3Speaker(ModelPlugin):
    package = __name__
    __version__ = __version__
    options_type = SpeakerOptions

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(
                name=MODEL,
                summary="Qwen3-TTS speaker encoder (ECAPA-TDNN, qwen-tts 0.1.1): voice WAV -> speaker embedding, "
                "3/6/12 s buckets in one multifunction package",
                variants=standard_variants(
                    FULL.as_dict(),
                    SMALL.as_dict(),
                    # several functions sharing weights in one package: multifunction needs iOS18
                    target="iOS18",
                    fp16="default: fp16 weights and compute",
                ),
                default_variant="fp16",
                components=(
                    ComponentSpec(
                        "encoder",
                        "log-mels [1, 128, 1, bucket frames] + valid frames -> embedding [1, enc_dim]",
                        functions=tuple(f"s{s}" for s in FULL.buckets),
                        # an embedding is compared by its direction: compressed variants keep cosine >= 0.995
                        # to the uncompressed package's, which is the 20 dB (1 % noise power) every other
                        # model's mixed aims at, said as a cosine; mixed plans its widths for it
                        compressed_cosine=COMPRESSED_COSINE,
                        # fp16 by the embedding's cosine to torch's: measured at mil 1 - 1.4e-7 (full size,
                        # benchmarks/bench_qwen3_speaker.py, 2026-12-03) and 1 - 1.0e-7 (small, seed 0); the
                        # bound is the core's fp16 default. fp32: the core's calibrated 16 x upstream's own
                        # float32 error (measured rel 9.1e-7 for a bound of 1.2e-5, full size)
                        tolerances={"fp16": Tolerance(cosine_min=0.999)},
                    ),
                ),
                hub_repo=CHECKPOINTS[DEFAULT_CHECKPOINT][0],
                revision=CHECKPOINTS[DEFAULT_CHECKPOINT][1],
                sample_rate=24000,
                required_level="mil",
                license="apache-2.0",  # the hub repository's card says so
                checkpoints={
                    name: Checkpoint(
                        name,
                        f"the speaker encoder of {repo} (embedding width {width})",
                        hub_repo=repo,
                        revision=revision,
                        source=f"hf://{repo}@{revision}",
                        family="ecapa-tdnn",
                    )
                    for name, (repo, revision, width) in CHECKPOINTS.items()
                },
                default_checkpoint=DEFAULT_CHECKPOINT,
                input="voice",
                output="embedding",
                languages={},
            )
        ]


plugin = Qwen3Speaker()
