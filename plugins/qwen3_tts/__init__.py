"""qwen3_speaker: a zoo plugin (scaffolded by ``zoo new-plugin``).

One component, ``synth``: a chunk of token embeddings [1, CHUNK, DIM] -> audio
[1, CHUNK * SAMPLES_PER_TOKEN]. The model is a placeholder that runs end to end;
each module below holds one role of the skeleton (``zoo.core.plugin.skeleton``).
Nothing heavy is imported here: ``zoo list`` must stay fast.
"""

from __future__ import annotations

from zoo.core import ComponentSpec, ModelPlugin, ModelSpec, Tolerance, Variant

from .options import DEFAULT, Options

__version__ = "0.1.0"


class Qwen3SpeakerPlugin(ModelPlugin):
    package = __name__
    __version__ = __version__
    options_type = Options

    def models(self) -> list[ModelSpec]:
        return [
            ModelSpec(
                name="qwen3_speaker",
                summary="placeholder model scaffolded by zoo new-plugin: replace with your own",
                variants={
                    "fp32": Variant("fp32", "fp32", "iOS17", DEFAULT.as_dict(), "fp32 everywhere"),
                    "fp16": Variant("fp16", "fp16", "iOS17", DEFAULT.as_dict(), "fp16 weights and compute"),
                },
                default_variant="fp32",
                components=(ComponentSpec("synth", "token embeddings [1, CHUNK, DIM] -> audio [1, CHUNK * SAMPLES_PER_TOKEN]"),),
                # the core's defaults hold for any weights (float64 exactness, fp32 within 16x upstream's
                # own rounding); fp16 is judged by cosine similarity
                tolerances={"fp16": Tolerance(cosine_min=0.999)},
                # hub_repo="org/model", revision="<commit>",  # the weights `zoo export qwen3_speaker` downloads
                sample_rate=24000,
                required_level="mil",
            )
        ]


plugin = Qwen3SpeakerPlugin()
