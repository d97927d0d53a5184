"""zoo-tiny: a toy two-component TTS model, and the smallest complete zoo plugin.

Nothing heavy is imported at module level: torch is imported inside hooks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from zoo.core import (
    Checkpoint,
    ComponentSpec,
    ModelSpec,
    Reference,
    RunResult,
    TensorSpec,
    Tolerance,
    Traceable,
    Variant,
    hookimpl,
    with_compressed,
)

__version__ = "0.2.0"

CHUNK = 8  # tokens per encoder call
WEIGHTS_FILE = "model.safetensors"


@hookimpl
def zoo_register_models():
    return [
        ModelSpec(
            name="tiny",
            summary="toy byte-level TTS: encoder (Conv2d ANE layout) + per-frame vocoder",
            variants=with_compressed(
                {
                    "fp32": Variant("fp32", precision="fp32", target="iOS17", options={"chunk": CHUNK}),
                    "fp16": Variant("fp16", precision="fp16", target="iOS17", options={"chunk": CHUNK}),
                },
                bases=("fp16",),
            ),
            default_variant="fp32",
            components=(
                ComponentSpec("encoder", "embeddings [1, 8, 16] -> hidden [1, 8, 16]"),
                ComponentSpec("vocoder", "hidden [1, 16] -> 240 samples", tolerances={"fp32": Tolerance(max_abs=1e-5)}),
            ),
            tolerances={"fp32": Tolerance(max_abs=1e-5), "fp16": Tolerance(cosine_min=0.999)},
            # the matrix tests: checkpoints named by ZOO_TINY_CHECKPOINTS (none otherwise)
            checkpoints={name: Checkpoint(name, f"test checkpoint {name}") for name in _checkpoints()},
            default_checkpoint=next(iter(_checkpoints()), ""),
        )
    ]


def _checkpoints():
    return [c for c in os.environ.get("ZOO_TINY_CHECKPOINTS", "").split(",") if c]


@hookimpl
def load_reference(model, variant, weights):
    import torch

    from .reference import TinyTTS

    net = TinyTTS().eval()
    files = {}
    cell = f"{variant.checkpoint}/{variant.name}"
    if os.environ.get("ZOO_TINY_FAIL") == cell:  # the matrix tests: one cell made to fail
        raise RuntimeError(f"cell {cell} fails on purpose (ZOO_TINY_FAIL)")
    if weights.kind == "random":
        # another checkpoint, other weights (a stable number from its name)
        offset = sum(ord(c) for c in variant.checkpoint) if variant.checkpoint else 0
        gen = torch.Generator().manual_seed(weights.seed + offset)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    elif weights.kind == "local":
        from safetensors.torch import load_file

        from zoo.core.kit.files import file_sha256

        path = Path(weights.path)
        file = path / WEIGHTS_FILE if path.is_dir() else path
        net.load_state_dict(load_file(str(file)), strict=True)
        files[file.name] = file_sha256(file)
    else:
        raise ValueError("the tiny model has no hub repository; use --weights or --random-weights")
    return Reference(net, files=files)


@hookimpl
def build_traceables(model, variant, reference):
    import numpy as np

    from .reference import DIM
    from .traceables import Conv1x1Encoder, Vocoder

    net = reference.model
    rng = np.random.default_rng(1234)
    chunk = variant.options["chunk"]
    emb_examples = [{"emb": rng.standard_normal((1, chunk, DIM)).astype(np.float32)} for _ in range(2)]
    hid_examples = [{"hidden": rng.standard_normal((1, DIM)).astype(np.float32)} for _ in range(2)]

    def torch_call(fn, name):
        import torch

        def call(**inputs):
            with torch.no_grad():
                return {name: fn(*(torch.from_numpy(v) for v in inputs.values())).numpy()}

        return call

    return {
        "encoder": Traceable(
            module=Conv1x1Encoder(net).eval(),
            inputs=[TensorSpec("emb", (1, chunk, DIM))],
            outputs=["hidden"],
            examples=emb_examples,
            reference=torch_call(net.encode, "hidden"),
        ),
        "vocoder": Traceable(
            module=Vocoder(net).eval(),
            inputs=[TensorSpec("hidden", (1, DIM))],
            outputs=["audio"],
            examples=hid_examples,
            reference=torch_call(net.vocode, "audio"),
        ),
    }


@hookimpl
def convert(model, variant, component, functions, out_path):
    """The core's default conversion (``None`` passes the call on), except under the test seam
    ``ZOO_TINY_HOLD_CONVERT=<file>``: write this process's pid to ``<file>`` once the convert
    stage is under way, then wait to be killed, so a test can kill an export mid-stage
    without racing it."""
    hold = os.environ.get("ZOO_TINY_HOLD_CONVERT")
    if not hold:
        return None
    Path(hold).write_text(str(os.getpid()))
    while True:
        time.sleep(1)


@hookimpl
def export_constants(model, variant, reference, out_dir):
    from safetensors.numpy import save_file

    path = Path(out_dir) / "embeddings.safetensors"
    save_file({"table": reference.model.embed.weight.detach().numpy().copy()}, str(path))
    return {"embeddings": path}


@hookimpl
def loop_contract(model, constants):
    from zoo.core import Call, Feed, FrontEnd, LoopContract, Repeat, Use

    vocoder = Call(
        "vocoder",
        feeds=(Feed("hidden", "output", "the encoder's hidden state of one real position [1, 16]"),),
        outputs=(Use("audio", "240 samples, appended"),),
    )
    encoder = Call(
        "encoder",
        feeds=(Feed("emb", "text", f"rows of embeddings.safetensors's table for {CHUNK} byte ids, zero-padded"),),
        outputs=(Use("hidden", "one row per real position, each to the vocoder"),),
    )
    return LoopContract(
        summary="bytes -> encoder a chunk at a time -> vocoder per real position",
        front_end=FrontEnd("bytes", "the text's UTF-8 bytes are the token ids", files=("embeddings",)),
        steps=(
            Repeat(
                f"chunk of {CHUNK} bytes",
                (encoder, Repeat("position", (vocoder,), until="every real position of the chunk")),
                until="every byte",
            ),
        ),
        result=f"float32 audio at {model.sample_rate} Hz",
    )


@hookimpl
def run_loop(model, runtime, text, options):
    import numpy as np
    from safetensors.numpy import load_file

    table = load_file(str(runtime.constants["embeddings"]))["table"]
    tokens = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    frames = []
    for start in range(0, len(tokens), CHUNK):
        ids = tokens[start : start + CHUNK]
        emb = np.zeros((1, CHUNK, table.shape[1]), dtype=np.float32)
        emb[0, : len(ids)] = table[ids]
        hidden = runtime("encoder", {"emb": emb})["hidden"]
        for i in range(len(ids)):  # padded positions are never vocoded
            frames.append(runtime("vocoder", {"hidden": hidden[:, i].astype(np.float32)})["audio"].reshape(-1))
    audio = np.concatenate(frames) if frames else np.zeros(0, np.float32)
    return RunResult(audio=audio.astype(np.float32), sample_rate=model.sample_rate, frames=len(frames))
