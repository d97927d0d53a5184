"""Full-size pocket_tts exports of several checkpoints (random weights, no network).

    .venv/bin/python benchmarks/bench_checkpoints.py [--variant fp16] [--keep DIR] \\
        [--checkpoints english,french_24l,english_7m_2026-10]
    # every config, reduced size:
    .venv/bin/python benchmarks/bench_checkpoints.py --variant small-fp16 --checkpoints all

For each checkpoint, measured in this run: `zoo export pocket_tts --checkpoint NAME
--random-weights` wall time and peak RSS (fresh stages), package and constants bytes, the
validation it reached, and `zoo run --backend mil --checkpoint NAME --json` calls per second of
audio. A checkpoint zoo cannot export yet is listed with the reason the CLI gives.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import measured_export, workspace_env, zoo

TEXT = "Hello there. This is a benchmark of one exported checkpoint, one frame at a time."
DEFAULT = "english,french_24l,english_7m_2026-10"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="fp16")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--checkpoints", default=DEFAULT)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="zoo-bench-checkpoints-"))
    work.mkdir(parents=True, exist_ok=True)
    env = workspace_env(work)
    rows = []
    names = args.checkpoints.split(",")
    if names == ["all"]:
        names = list(json.loads(zoo(env, work, "info", "pocket_tts", "--json").stdout)["checkpoints"])
    for name in names:
        probe = subprocess.run(
            [sys.executable, "-m", "zoo", "info", "pocket_tts", "--checkpoint", name, "--json"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        if probe.returncode:
            rows.append((name, None, " ".join(probe.stderr.split())))
            continue
        report, entry, fig = measured_export(env, work, "pocket_tts", args.variant, extra=("--checkpoint", name))
        run = json.loads(
            zoo(
                env,
                work,
                "run",
                "pocket_tts",
                TEXT,
                "-o",
                str(work / f"{name}.wav"),
                "--backend",
                "mil",
                "--checkpoint",
                name,
                "--json",
            ).stdout
        )
        fig["validation_level"] = report["validation_level"]
        fig["params"] = next((s.get("detail") for s in report["stages"] if s["stage"] == "load_reference"), None)
        fig["mil_run"] = {k: run[k] for k in ("frames", "audio_seconds", "wall_seconds", "calls_per_audio_second")}
        fig["mimi_sha256"] = next(c["sha256"] for c in entry["components"] if c["name"] == "mimi")
        rows.append((name, fig, ""))
        print(json.dumps({name: fig}, indent=1), flush=True)
    print()
    size = "reduced size (tests' architecture)" if args.variant.startswith("small") else "full size"
    print(f"pocket_tts checkpoints, variant {args.variant}, {size}, random weights:")
    for name, fig, why in rows:
        if fig is None:
            print(f"  {name}: not exported: {why}")
            continue
        print(
            f"  {name}: export {fig['export_seconds']} s, peak RSS {fig['export_peak_rss_mb']} MB, packages "
            f"{fig['packages_total_mb']} MB + constants "
            f"{fig['constants_mb']} MB, level {fig['validation_level']}, "
            f"{fig['mil_run']['calls_per_audio_second']:.1f} calls per second of audio "
            f"(mil run: {fig['mil_run']['frames']} frames in {fig['mil_run']['wall_seconds']:.1f} s), mimi "
            f"{fig['mimi_sha256'][:12]}"
        )
    mimis = [fig["mimi_sha256"] for _, fig, _ in rows if fig]
    print(f"  Mimi packages: {len(set(mimis))} distinct of {len(mimis)} (each checkpoint's own weights)")
    levels = [fig["validation_level"] for _, fig, _ in rows if fig]
    print(
        f"  exported {len(levels)} of {len(rows)} (levels reached: {', '.join(sorted(set(levels)))}), refused "
        f"{len(rows) - len(levels)}"
    )


if __name__ == "__main__":
    main()
