"""loop_parity: the whole run loop against upstream on one utterance (judged at the reference level)."""

from __future__ import annotations

from typing import Any

import torch

from zoo.core import LoopCase, RunOptions, Tolerance

from . import loop
from .options import Options

TEXT = "Hello, world."
#: the loop in fp32 torch against upstream in fp32 torch: only summation order differs
TOLERANCE = Tolerance(rel=1e-5)


def cases(runtime: Any, upstream: Any, options: Options) -> list[LoopCase]:
    ours = loop.run(runtime, TEXT, RunOptions())
    tokens = torch.tensor(list(TEXT.encode("utf-8")))
    with torch.no_grad():
        want = upstream(tokens).numpy()
    return [LoopCase("utterance", ours.audio, want, TOLERANCE, {"text": TEXT})]
