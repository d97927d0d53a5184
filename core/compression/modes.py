"""The compression modes (``COMPRESSIONS``): what each emits, the floors its weights must decompress
at, and the mixed planner's targets, each with the measurement behind it."""

from __future__ import annotations

from dataclasses import dataclass

from ..plugin.names import COMPRESSION_TARGETS, COMPRESSIONS  # noqa: F401  (every compression a variant can name)

#: weights smaller than this stay as they are (coremltools' default threshold: biases, norms)
WEIGHT_THRESHOLD = 2048

#: output channels sharing one look-up table (per-grouped-channel palettization: iOS18)
GROUP_SIZE = 16

#: distinct values of a group a look-up table's optimal 1-D k-means runs on (see ``lut_kmeans``)
KMEANS_BINS = 512


@dataclass(frozen=True)
class Mode:
    name: str
    bits: int
    kind: str  # linear | palette
    #: the lowest deployment target whose ops the mode emits
    target: str
    description: str
    #: every compressed weight must decompress at least this close to the original (SNR, dB):
    #: 10 dB under what the mode gives Gaussian weights (int8 per channel: ~42 dB; optimal 6- and
    #: 4-bit tables: 31 and 20 dB), room for trained weights' heavier tails; a shuffled or
    #: misindexed table decompresses at 0 dB or less. Measured worst, random weights, small
    #: pocket_tts: w8 41.6 dB, p4 19.8 dB.
    weight_snr_floor_db: float


#: the least SNR (dB) a weight palettized at each width must decompress at: 10 dB under what an
#: optimal table gives Gaussian weights (measured with ``lut_kmeans``, 16 x 1024 values: 44.4 dB
#: at 8 bits, 32.2 at 6, 20.3 at 4), room for trained weights' heavier tails
PALETTE_FLOOR_DB = {8: 33.0, 6: 21.0, 4: 10.0}

#: the ``mixed`` compression's widths, narrowest first
MIXED_BITS = (4, 6, 8)

#: what ``mixed`` aims at: every output of the component within this SNR (dB) of the uncompressed
#: package's, on the parity examples — output noise power 1% of the signal, between what uniform
#: tables give full-size pocket_tts (p6: 23.7-25.7 dB, p4: 9.7-14.7 dB; w8: 32.7-34.7 dB)
MIXED_TARGET_DB = 20.0

#: outputs the host rounds to integers (kokoro's durations) are planned by their margin to the
#: rounding boundary (``integer_noise_budget``): the noise whose expected flips move them by half of
#: what the gate allows (validation.metrics.INTEGER_TEMPO). An SNR target cannot do it: a trained duration a
#: hair from a boundary flips under any noise (trained Kokoro-82M, mixed at 50 dB: 19 flipped).
#: Half: room for the planner's linear estimate (measured, small kokoro: within 1 dB of the package).
INTEGER_PLAN_SHARE = 0.5

#: and the expected number of elements moved by more than one kept under this
INTEGER_PLAN_JUMPS = 0.05

MODES = {
    "w8": Mode(
        "w8", 8, "linear", COMPRESSION_TARGETS["w8"], "int8 weights, symmetric, one scale per output channel", 32.0
    ),
    "p6": Mode(
        "p6",
        6,
        "palette",
        COMPRESSION_TARGETS["p6"],
        f"6-bit look-up table (64 values, 1-D k-means) per group of {GROUP_SIZE} output channels",
        21.0,
    ),
    "p4": Mode(
        "p4",
        4,
        "palette",
        COMPRESSION_TARGETS["p4"],
        f"4-bit look-up table (16 values, 1-D k-means) per group of {GROUP_SIZE} output channels",
        10.0,
    ),
    "mixed": Mode(
        "mixed",
        0,
        "mixed",
        COMPRESSION_TARGETS["mixed"],
        f"look-up tables of 8, 6 or 4 bits per weight, the narrowest its measured effect on the outputs allows "
        f"(outputs >= {MIXED_TARGET_DB:g} dB SNR)",
        0.0,
    ),
}
