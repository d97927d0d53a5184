"""export_constants: what the run loop needs besides the packages (safetensors and JSON, never pickles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .options import Options, RunConfig


def export(upstream: Any, options: Options, precision: str, out_dir: Path) -> dict[str, Path]:
    from safetensors.numpy import save_file

    table = out_dir / "embeddings.safetensors"
    save_file({"table": upstream.embed.weight.detach().numpy().copy()}, str(table))
    config = RunConfig(sample_rate=24000, chunk=options.chunk, samples_per_token=options.samples_per_token)
    return {"embeddings": table, "config": config.save(out_dir / "config.json")}
