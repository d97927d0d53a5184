"""qwen3_speaker's typed records: the variant options, and the run config written by constants.py and
read back by loop.py."""

from __future__ import annotations

from dataclasses import dataclass

from ...core import Record

#: clip lengths in seconds, one function each: a clip runs in the shortest bucket that holds it
BUCKETS = (3, 6, 12)
#: the shortest clip embedded (a speaker embedding of less is not worth its name; upstream's own
#: voice clone asks for about 3 s)
MIN_SECONDS = 1.0


@dataclass(frozen=True)
class SpeakerOptions(Record):
    #: "full" (the released architecture) or "small" (narrower, for tests: random weights only)
    size: str
    #: clip buckets in seconds (one function of the package each)
    buckets: tuple[int, ...] = BUCKETS
    #: the base checkpoint the encoder comes from (``--checkpoint``; config.CHECKPOINTS)
    checkpoint: str = ""


FULL = SpeakerOptions("full")
SMALL = SpeakerOptions("small")


@dataclass(frozen=True)
class RunConfig(Record):
    """``config.json`` of an export: what the run loop needs to know about the packages."""

    sample_rate: int
    n_fft: int
    hop: int
    window: int
    log_floor: float
    magnitude_eps: float
    #: seconds -> frames of each bucket, shortest first
    buckets: tuple[int, ...]
    bucket_frames: tuple[int, ...]
    enc_dim: int
    min_seconds: float
