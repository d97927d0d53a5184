"""The names the contract checks values against: precisions, deployment targets, validation levels,
compressions, and how coremltools names a converted state. A leaf: it imports nothing of zoo, so
the contract (``spec``), the validation levels, the compression modes and the MIL interpreter all
read the same names without importing each other."""

from __future__ import annotations

import re

#: the precisions a variant can convert at
PRECISIONS = ("fp16", "fp32")
#: the deployment targets a variant can name
TARGETS = ("iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15")
#: validation level names, lowest first (``validation.levels.REGISTRY`` holds one level for each, in this order)
LEVELS = ("reference", "mil", "coreml")
#: what a model's run loop takes (``ModelSpec.input``): text to speak, or a voice recording (``--voice FILE.wav``)
INPUTS = ("text", "voice")
#: what a model's run loop makes (``ModelSpec.output``; ``zoo run -o`` is written by it): audio (a WAV),
#: an embedding (a float vector) or tokens (integer codes); the last two as .npy or .json by the suffix
OUTPUTS = ("audio", "embedding", "tokens")
#: the files ``zoo run -o`` writes for each output
OUTPUT_SUFFIXES = {"audio": (".wav",), "embedding": (".npy", ".json"), "tokens": (".npy", ".json")}
#: every compression a variant can name; ``none`` leaves the converted package as it is
COMPRESSIONS = ("none", "w8", "p6", "p4", "mixed")
#: the lowest deployment target whose ops each compression emits (``compression.compress.MODES``)
COMPRESSION_TARGETS = {"w8": "iOS16", "p6": "iOS18", "p4": "iOS18", "mixed": "iOS18"}
#: what each compression does, in a few words (a compressed variant's description; the modes'
#: full descriptions and numbers: ``compression.compress.MODES``)
COMPRESSION_SUMMARIES = {
    "w8": "int8, one scale per output channel",
    "p6": "6-bit look-up tables",
    "p4": "4-bit look-up tables",
    "mixed": "look-up tables of 8, 6 or 4 bits, chosen per layer",
}


def state_identifier(name: str) -> str:
    """The name coremltools gives a state converted from a torch buffer (``layers.0.k`` -> ``layers_0_k``)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)
