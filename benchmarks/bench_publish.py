"""Benchmark of `zoo publish` and `zoo verify DIR --execute` on full-size exports (random weights).

    [BENCH_MODELS=kokoro,pocket_tts] .venv/bin/python benchmarks/bench_publish.py [--keep DIR]

Per model (its default fp16 variant, exported first into the workspace): the publish's wall time and
peak RSS (copy, hashing, manifest, loop contract, pictures: one parity case of the audio package run
by the MIL interpreter), the folder's size and what zoo adds to the export's files (card, manifest,
figures), then `zoo verify DIR --execute`'s wall time (every package on its parity inputs from the
folder alone) and its verdict.

Goals: publish <= 60 s per full-size export; what zoo adds <= 1 MB; verify --execute passes.
"""

from __future__ import annotations

import json
import os
import resource
import time

from common import measured_export, workspace, zoo

PUBLISH_GOAL_S = 60.0
ADDED_GOAL_MB = 1.0
DEFAULT_MODELS = ("kokoro", "pocket_tts", "qwen3_speaker")


def main() -> None:
    _, work, env = workspace(__doc__, "zoo-bench-publish-")
    models = os.environ.get("BENCH_MODELS", ",".join(DEFAULT_MODELS)).split(",")
    rows = []
    for model in models:
        report, entry, figures = measured_export(env, work, model, "fp16", force=False)
        folder = work / f"published-{model}"
        start = time.perf_counter()
        manifest = json.loads(zoo(env, work, "publish", report["id"], "--dir", str(folder), "--json").stdout)
        publish_s = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        total = sum(f["bytes"] for f in manifest["files"]) + (folder / "manifest.json").stat().st_size
        exported = {c["path"] for c in entry["components"]} | {c["path"] for c in entry["constants"]}
        exported |= {p["path"] for p in entry.get("parity", [])}
        added = (
            sum(
                f["bytes"]
                for f in manifest["files"]
                if not any(f["path"] == p or f["path"].startswith(p + "/") for p in exported)
            )
            + (folder / "manifest.json").stat().st_size
        )
        start = time.perf_counter()
        verified = json.loads(zoo(env, work, "verify", str(folder), "--execute", "--json").stdout)
        verify_s = time.perf_counter() - start
        row = {
            "model": model,
            "export_id": report["id"],
            "export_seconds": figures["export_seconds"],
            "folder_mb": round(total / 1e6, 1),
            "added_by_zoo_kb": round(added / 1e3, 1),
            "figures": sorted(f["path"] for f in manifest["files"] if f["path"].startswith("figures/")),
            "loop_steps": len(manifest["loop"]["steps"]) if manifest["loop"] else 0,
            "publish_seconds": round(publish_s, 1),
            "publish_peak_rss_mb_max_so_far": round(peak_mb),
            "verify_execute_seconds": round(verify_s, 1),
            "verify_ok": verified["ok"],
            "executed": {c["component"]: c["status"] for c in verified["executed"]},
        }
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
    print("\nmodel          publish s (goal <= 60)   added KB (goal <= 1000)   verify --execute s   ok")
    for r in rows:
        fast = "ok" if r["publish_seconds"] <= PUBLISH_GOAL_S else "MISS"
        small = "ok" if r["added_by_zoo_kb"] <= ADDED_GOAL_MB * 1000 else "MISS"
        print(
            f"{r['model']:<14} {r['publish_seconds']:>8.1f} {fast:>6}"
            f"   {r['added_by_zoo_kb']:>12.1f} {small:>6}"
            f"   {r['verify_execute_seconds']:>14.1f}   {r['verify_ok']}"
        )


if __name__ == "__main__":
    main()
