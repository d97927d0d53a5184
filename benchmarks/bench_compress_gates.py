"""The compressed gates' figures: what each compressed package's outputs measure against the bound they are judged by.

    .venv/bin/python benchmarks/bench_compress_gates.py [--size small|full] \\
        [--models kokoro,pocket_tts,vibevoice] [--modes w8,p4,mixed] [--keep DIR]

Exports every MODEL's compressed variants with seeded random weights (small architectures by
default: minutes; ``--size full``: hours on 2 cores) and prints, per compressed component judged by
SNR, the three figures behind its gate (core/compression/compress.py):

  actual      the compressed package's least output SNR against torch (what the mil level measures)
  equivalent  the uncompressed package with the same weight errors at random signs (the bound's basis)
  unit-gain   the old prediction from the weights' own SNRs (recorded, no longer judged by)

Goal beside them: actual ≥ equivalent - MARGIN_DB (3 dB): a compression whose errors act like
noise of their size passes; the margin is what correct compressions use of it. Then, per export,
the integer-output and loop checks with their bounds, and whether the export was refused.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import export_args, workspace_env, zoo_process  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("small", "full"), default="small")
    parser.add_argument("--models", default="kokoro,pocket_tts,vibevoice")
    parser.add_argument("--modes", default="w8,p4,mixed")
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    from zoo.core.compression.compress import MARGIN_DB

    work = args.keep or Path(tempfile.mkdtemp(prefix="zoo-bench-gates-"))
    work.mkdir(parents=True, exist_ok=True)
    env = workspace_env(work)
    prefix = "small-fp16" if args.size == "small" else "fp16"
    worst_gap = float("-inf")
    print(
        f"goal: actual ≥ equivalent - {MARGIN_DB:g} dB for every compressed component judged by SNR ({args.size} "
        "architectures, random weights)"
    )
    for model in args.models.split(","):
        for mode in args.modes.split(","):
            variant = f"{prefix}-{mode}"
            proc = zoo_process(env, work, *export_args(work, model, variant))
            try:
                report = json.loads(proc.stdout)
            except json.JSONDecodeError:
                print(f"{model} {variant}: export failed before a report:\n{proc.stderr[-2000:]}")
                continue
            checks = report.get("validation", [])
            verdict = (
                f"exported at {report.get('validation_level')}"
                if proc.returncode == 0
                else f"REFUSED: {str(report.get('error', ''))[:200]}"
            )
            print(f"\n{model} {variant}: {verdict}")
            records = {c["name"]: c.get("compression") or {} for c in report.get("components", [])}
            for check in checks:
                if check.get("level") != "mil" or check.get("metric") != "snr_db_min":
                    continue
                record = records.get(check["component"], {})
                if "output_snr_db" not in record:
                    continue
                gap = check["value"] - record["output_snr_db"]
                worst_gap = max(worst_gap, -gap)
                print(
                    f"  {check['component']:<14} actual {check['value']:6.1f} dB   equivalent "
                    f"{record['output_snr_db']:6.1f} dB   "
                    f"unit-gain {record['predicted_snr_db']:6.1f} dB   bound {check['threshold']:6.1f} dB   actual - "
                    f"equivalent {gap:+.1f} dB"
                )
            for check in checks:
                if check.get("level") == "mil" and (
                    ":" in check.get("metric", "") or check.get("component", "").startswith("loop:")
                ):
                    print(
                        f"  {check['component']:<14} {check['metric']:<18} {check.get('value', float('nan')):8.4g} "
                        f"(bound {check.get('threshold', float('nan')):.4g}) "
                        f"{check['status']}{'; ' + check['reason'] if check.get('reason') else ''}"
                    )
    if worst_gap > float("-inf"):
        where = f"{worst_gap:.1f} dB under" if worst_gap > 0 else f"{-worst_gap:.1f} dB over (every one at or above)"
        print(f"\nworst: actual {where} its equivalent (goal: at most {MARGIN_DB:g} dB under)")


if __name__ == "__main__":
    main()
