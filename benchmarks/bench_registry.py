"""A large registry: how long `zoo list`, `zoo list --json`, `zoo info` and `zoo verify ID` take
against a registry of ~50 MB (issue 26: 120 s to list; goal 5 s). `verify` exits 1 here: the
entries point at directories that do not exist.

    .venv/bin/python benchmarks/bench_registry.py [--mb 50] [--keep DIR]

Writes a registry of well-formed entries (each shaped like a real export's: 3 components, 24
validation records), then times each command in a subprocess. Nothing is exported: the entries point at directories
that do not exist, which
`zoo list` does not read.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomlkit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT.parent))
GOAL_SECONDS = 5.0


def entry(i: int) -> dict:
    def component(name: str) -> dict:
        return {
            "name": name,
            "path": f"{name}.mlpackage",
            "functions": ["main"],
            "sha256": f"{i:064x}",
            "bytes": 1000 + i,
            "files": [
                "Manifest.json",
                "Data/com.apple.CoreML/model.mlmodel",
                "Data/com.apple.CoreML/weights/weight.bin",
            ],
        }

    return {
        "id": f"kokoro-fp16-20260101T000000Z-{i:06x}",
        "model": "kokoro",
        "status": "valid",
        "validation_level": "mil",
        "created_at": f"2026-01-01T00:{i // 3600 % 60:02d}:{i % 60:02d}+00:00",
        "path": f"exports/kokoro-fp16-20260101T000000Z-{i:06x}",
        "out": "exports",
        "inputs_sha256": f"{i:064x}",
        "plugin": {"name": "kokoro", "version": "0.1", "source_sha256": "0" * 64},
        "variant": {"name": "fp16", "precision": "fp16", "target": "iOS17", "options": {"checkpoint": "v1"}},
        "weights": {"kind": "random", "seed": i},
        "tools": {"python": "3.11", "zoo": "0.1.0", "torch": "2.13.0", "coremltools": "9.0", "numpy": "2.3"},
        "components": [component(n) for n in ("predictor", "decoder", "text_encoder")],
        "constants": [{"name": "voices", "path": "constants/voices.safetensors", "sha256": "1" * 64, "bytes": 10}],
        "parity": [
            {"name": n, "path": f"parity/{n}.safetensors.gz", "sha256": "2" * 64, "bytes": 10}
            for n in ("predictor", "decoder", "text_encoder")
        ],
        "validation": [
            {
                "level": "mil",
                "component": "decoder",
                "metric": f"m{k}",
                "value": 1e-3 * k,
                "threshold": 0.5,
                "status": "passed",
                "basis": "rel <= 16 x upstream fp32 error 6.3e-07",
                "worst": {"max_abs": 0.1, "rel": 0.01, "cosine": 0.999},
            }
            for k in range(24)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="zoo-bench-registry-"))
    work.mkdir(parents=True, exist_ok=True)
    registry = work / "registry.toml"
    from zoo.core.registry.store import new_document

    doc = new_document()
    one = len(tomlkit.dumps({"exports": [entry(0)]}))
    count = int(args.mb * 1e6 / one)
    start = time.perf_counter()
    chunks = [tomlkit.dumps(doc)]
    for i in range(count):  # rendered entry by entry: one tomlkit document of 50 MB takes minutes to dump
        chunks.append(tomlkit.dumps({"exports": [entry(i)]}))
    registry.write_text(chunks[0] + "".join(chunks[1:]))
    print(
        f"registry: {registry.stat().st_size / 1e6:.1f} MB, {count} entries (written in "
        f"{time.perf_counter() - start:.0f} s)"
    )
    env = {
        **os.environ,
        "ZOO_REGISTRY": str(registry),
        "ZOO_CACHE": str(work / "cache"),
        "COLUMNS": "120",
        "TQDM_DISABLE": "1",
    }
    # the first command parses the TOML and keeps a JSON index in the cache; the others read the index
    for args_ in (
        ["list", "--json"],
        ["list"],
        ["list", "--all"],
        ["info", "kokoro"],
        ["verify", "kokoro-fp16-20260101T000000Z-000000"],
    ):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "zoo", *args_], cwd=work, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        ok = "ok" if seconds <= GOAL_SECONDS else "over"
        print(
            f"zoo {' '.join(args_):<52} {seconds:6.1f} s, exit {proc.returncode} (goal <= {GOAL_SECONDS:.0f} s: {ok})"
        )


if __name__ == "__main__":
    main()
