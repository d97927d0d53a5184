"""Peak memory of `zoo run` against text length (random weights, MIL backend, no network).

    .venv/bin/python benchmarks/bench_long_text.py MODEL [--variant fp16] [--keep DIR] [--lengths 12,150,600,3261]

Exports MODEL (or reuses the identical export already in DIR's registry), then speaks texts of
the given lengths (sentences of common words, the longest a paragraph) through the registered
export with zoo's MIL interpreter, one process each, and prints per text: characters, seconds
of audio, wall seconds, and the process's peak RSS next to the goal (2 GB whatever the length).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import export_args, workspace_env  # noqa: E402
from common import zoo as run_zoo  # noqa: E402

GOAL_MB = 2048
WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bright stars shine above quiet green hills "
    "near an old stone bridge where rivers meet"
).split()


def text_of(length: int, seed: int = 3) -> str:
    rng = random.Random(seed)
    sentences: list[str] = []
    while len(" ".join(sentences)) < length:
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + ".")
    text = " ".join(sentences)[:length]
    return text if text.endswith(".") else text.rstrip() + "."


def measured(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """(process, wall seconds, peak RSS in MB) of one child, from its own rusage (os.wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(argv, proc.returncode, out.read(), err.read())
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return done, wall, usage.ru_maxrss / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--variant", default="fp16")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (its export is reused)")
    parser.add_argument("--lengths", default="12,150,600,3261")
    parser.add_argument("--set", action="append", default=[], help="run option KEY=VALUE passed to zoo run")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix=f"zoo-bench-long-{args.model}-"))
    work.mkdir(parents=True, exist_ok=True)
    env = workspace_env(work)
    zoo = [sys.executable, "-m", "zoo"]
    run_zoo(env, work, *export_args(work, args.model, args.variant))
    rows = []
    for length in sorted(int(n) for n in args.lengths.split(",")):
        text = text_of(length)
        settings = [a for kv in args.set for a in ("--set", kv)]
        proc, wall, peak = measured(
            zoo
            + [
                "run",
                args.model,
                text,
                "-o",
                str(work / f"{length}.wav"),
                "--backend",
                "mil",
                "--variant",
                args.variant,
                *settings,
                "--json",
            ],
            env,
            work,
        )
        if proc.returncode:
            rows.append(
                {
                    "chars": len(text),
                    "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
                }
            )
            continue
        run = json.loads(proc.stdout)
        rows.append(
            {
                "chars": len(text),
                "audio_seconds": round(run["audio_seconds"], 1),
                "wall_seconds": round(wall, 1),
                "peak_rss_mb": round(peak),
            }
        )
    print(json.dumps({"model": args.model, "variant": args.variant, "runs": rows}, indent=1))
    print()
    for row in rows:
        if "error" in row:
            print(f"{row['chars']:>6} chars: failed: {row['error']}")
        else:
            verdict = "ok" if row["peak_rss_mb"] <= GOAL_MB else "over"
            print(
                f"{row['chars']:>6} chars: {row['audio_seconds']:>6} s of audio in {row['wall_seconds']:>6} s, peak "
                f"RSS {row['peak_rss_mb']} MB (goal <= {GOAL_MB}: {verdict})"
            )


if __name__ == "__main__":
    main()
