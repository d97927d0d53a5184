"""Compressed variants at full size: bytes against the goal, export time against the uncompressed
export's, the mil-level SNR of each component, and the whole loop on compressed vs uncompressed.

    .venv/bin/python benchmarks/bench_compression.py MODEL [--modes mixed,w8,p6,p4] [--base fp16] [--keep DIR]

Exports MODEL's base variant (fp16; small-fp16 for the reduced size; --force) and then
<base>-<mode> for each mode (random weights, one private registry and stage cache: each
compressed export reuses the stages before compression its base built, as a user's second
export does — the export time printed is that export's), then speaks one text through each export with zoo's MIL
interpreter (same seed) and compares the compressed loop's audio with the uncompressed one's:
frames and the relative magnitude-spectrogram distance (core.validation.spectral_distance).
Each compressed export also records its own whole-loop check (``loop:compressed``), printed
with its bound; the compress stages' seconds are printed beside the export's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import measured_export, workspace_env, zoo  # noqa: E402

#: issue #15's goals, packages + constants (MB)
GOALS_MB = {"pocket_tts": 80, "kokoro": 60, "vibevoice": 600}
TEXT = "The quick brown fox jumps over the lazy dog. Seven bright stars shine above the quiet hills."
RUN_ARGS = {"pocket_tts": ["--set", "temperature=0"], "vibevoice": ["--set", "max_seconds=4"], "kokoro": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--modes", default="mixed,w8,p6,p4")
    parser.add_argument("--base", default="fp16", help="the uncompressed variant the compressed ones derive from")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix=f"zoo-bench-compress-{args.model}-"))
    work.mkdir(parents=True, exist_ok=True)
    env = workspace_env(work)
    from zoo.core.kit.audio import read_wav
    from zoo.core.validation.metrics import spectral_distance

    rows = []
    for variant in [args.base] + [f"{args.base}-{m}" for m in args.modes.split(",")]:
        _, entry, figures = measured_export(env, work, args.model, variant, force=variant == args.base)
        wav = work / f"{variant}.wav"
        run = json.loads(
            zoo(
                env,
                work,
                "run",
                args.model,
                TEXT,
                "-o",
                str(wav),
                "--variant",
                variant,
                "--backend",
                "mil",
                "--seed",
                "0",
                *RUN_ARGS.get(args.model, []),
                "--json",
            ).stdout
        )
        mil = {
            (v["component"], v["metric"]): v
            for v in entry["validation"]
            if v["level"] == "mil" and v["status"] != "skipped" and v.get("metric")
        }
        rows.append(
            {
                "variant": variant,
                "total_mb": figures["total_mb"],
                "export_seconds": figures["export_seconds"],
                "export_peak_rss_mb": figures["export_peak_rss_mb"],
                "frames": run["frames"],
                "wav": str(wav),
                "mil": {
                    f"{c} {m}": f"{v['value']:.4g} (bound {v['threshold']:.4g}) {v['status']}"
                    for (c, m), v in mil.items()
                    if "threshold" in v
                },
                "compress_seconds": round(
                    sum(t for name, t in figures["stages"].items() if name.startswith("compress:")), 1
                ),
                "loop_check_seconds": round(
                    figures["stages"].get("loop:compressed", 0.0) + figures["stages"].get("loop:uncompressed", 0.0), 1
                ),
                "compression": {c["name"]: c.get("compression") for c in entry["components"]},
            }
        )
    base = rows[0]
    reference, _ = read_wav(Path(base["wav"]))
    for row in rows[1:]:
        audio, _ = read_wav(Path(row["wav"]))
        n = min(len(audio), len(reference))
        row["loop_spectral_vs_fp16"] = round(spectral_distance(audio[:n], reference[:n]), 4) if n else None
        row["loop_frames_vs_fp16"] = row["frames"] - base["frames"]
        row["export_time_vs_fp16"] = round(row["export_seconds"] / base["export_seconds"], 2)
    print(json.dumps({"model": args.model, "rows": rows}, indent=1))
    print()
    goal = GOALS_MB.get(args.model)
    for row in rows:
        verdict = "ok" if goal and row["total_mb"] <= goal else "over"
        line = f"{row['variant']:>10}: {row['total_mb']:>8} MB (goal <= {goal} MB: {verdict})"
        line += f", export {row['export_seconds']} s"
        if "export_time_vs_fp16" in row:
            line += (
                f" = {row['export_time_vs_fp16']}x {args.base}'s (goal <= 2x; after {args.base}'s in the same cache; "
                f"compress stages {row['compress_seconds']} s, "
                f"loop check {row['loop_check_seconds']} s)"
            )
            line += f", loop vs {args.base}: frames {row['loop_frames_vs_fp16']:+d}"
            line += f", spectral {row['loop_spectral_vs_fp16']}"
        print(line)
        for comp, verdict in row["mil"].items():
            print(f"{'':>12}{comp}: {verdict}")


if __name__ == "__main__":
    main()
