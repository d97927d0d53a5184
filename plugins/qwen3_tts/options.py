"""Typed records that cross a file boundary: the variant options (in the registry) and the run
config (written by constants.py, read back by loop.py)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.core import Record


@dataclass(frozen=True)
class Options(Record):
    #: tokens per synth call (the package's fixed input length)
    chunk: int = 8
    #: width of the token embeddings
    dim: int = 16
    #: audio samples per token (10 ms at 24 kHz)
    samples_per_token: int = 240


DEFAULT = Options()


@dataclass(frozen=True)
class RunConfig(Record):
    sample_rate: int
    chunk: int
    samples_per_token: int
