"""Benchmark of the full-size qwen3_speaker export (random weights; the 0.6b-base architecture:
ECAPA-TDNN 512/1536 channels, embedding width 1024).

    .venv/bin/python benchmarks/bench_qwen3_speaker.py [--keep DIR]

Prints, measured in this run, with the goals beside them:
* per variant (fp32, fp16, fp16-w8, fp16-mixed): export wall time and peak RSS (fp32 and fp16 with a
  fresh stage cache; the compressed ones reuse fp16's stages, so their time is compression and its
  checks), package bytes, and the validation records;
* `zoo run qwen3_speaker --voice CLIP -o e.npy --backend mil` per variant on a clip in each bucket
  (2.5, 4.2, 9 s) and on a 30 s recording (three 12 s windows averaged): the embedding's cosine to
  upstream's (mel_spectrogram + Qwen3TTSSpeakerEncoder in fp32 on the whole clip);
* the MIL interpreter vs the torch traceable per call per bucket (the fp16 package; warm, median of three).

Goals: fp16-mixed <= 45 % of fp16's bytes with its cosine gate passed; interpreter <= 2x torch per call.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from common import fp32_session, interpreter_over_torch, measured_export, workspace, zoo

VARIANTS = ("fp32", "fp16", "fp16-w8", "fp16-mixed")
CLIPS = (2.5, 4.2, 9.0, 30.0)
MIXED_SHARE_GOAL = 0.45
INTERPRETER_GOAL = 2.0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def rounding_share(package: Path, function: str, traceable) -> float:
    """The share of one interpreter call of the fp16 package spent rounding values to fp16 (cProfile)."""
    import cProfile
    import pstats

    from zoo.core.mil import MilProgram

    program = MilProgram.load(package)
    declared = program.function(function).inputs
    example = {k: v.astype(declared[k].dtype) for k, v in traceable.examples[0].items()}
    program.run(example, function)
    profile = cProfile.Profile()
    profile.runcall(program.run, example, function)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(t for (_, _, name), (_, _, t, _, _) in stats.items())
    rounding = sum(c for (_, _, name), (_, _, _, c, _) in stats.items() if name == "round_to_fp16")
    return rounding / total if total else 0.0


def main() -> None:
    from zoo.core import WeightsSource
    from zoo.core.host.plugins import PluginHost
    from zoo.core.kit.audio import write_wav
    from zoo.plugins.qwen3_tts.options import FULL
    from zoo.plugins.qwen3_tts.parity import upstream_embedding
    from zoo.plugins.qwen3_tts.reference import load
    from zoo.plugins.qwen3_tts.signals import voice_clip

    _, work, env = workspace(__doc__, "zoo-bench-qwen3-speaker-")
    upstream = load(WeightsSource.random(0), FULL).model
    clips = {}
    for seconds in CLIPS:
        audio = voice_clip(seconds, int(seconds * 10))
        path = work / f"clip{seconds:g}.wav"
        write_wav(path, audio, 24000)
        clips[seconds] = (path, upstream_embedding(upstream, audio))

    results: dict = {"variants": {}}
    exports = {}
    for variant in VARIANTS:
        report, entry, figures = measured_export(env, work, "qwen3_speaker", variant, force=variant in ("fp32", "fp16"))
        exports[variant] = Path(report["path"])
        cosines = {}
        for seconds, (path, want) in clips.items():
            out = work / f"{variant}-{seconds:g}.npy"
            zoo(
                env,
                work,
                "run",
                "qwen3_speaker",
                "--voice",
                str(path),
                "-o",
                str(out),
                "--backend",
                "mil",
                "--no-cache",
            )
            cosines[f"{seconds:g}s"] = round(cosine(np.load(out), want), 6)
        figures["cosine_to_upstream"] = cosines
        figures["gates"] = {
            f"{v['level']}/{v.get('metric')}": (v.get("value"), v.get("threshold"), v["status"])
            for v in entry["validation"]
            if v["level"] == "mil"
        }
        results["variants"][variant] = figures

    host = PluginHost()
    session = fp32_session(host, "qwen3_speaker", "fp16")
    functions = session.traceables()["encoder"]
    per_call = {}
    for name, traceable in functions.items():
        torch_s, mil_s = interpreter_over_torch(
            traceable, exports["fp16"] / "encoder.mlpackage", name, traceable.examples[0], held=("mels",)
        )
        _, mil32_s = interpreter_over_torch(traceable, exports["fp32"] / "encoder.mlpackage", name)
        per_call[name] = {
            "torch_s": round(torch_s, 4),
            "mil_s": round(mil_s, 4),
            "ratio": round(mil_s / torch_s, 2),
            "mil_fp32_s": round(mil32_s, 4),
            "ratio_fp32": round(mil32_s / torch_s, 2),
            "fp16_rounding_share": round(rounding_share(exports["fp16"] / "encoder.mlpackage", name, traceable), 2),
        }
    results["interpreter_vs_torch"] = per_call

    print(json.dumps(results, indent=1))
    print()
    fp16 = results["variants"]["fp16"]["packages_total_mb"]
    for variant, f in results["variants"].items():
        worst = min(f["cosine_to_upstream"].values())
        print(
            f"{variant:11s} export {f['export_seconds']:6.1f} s, peak RSS {f['export_peak_rss_mb']:5d} MB, packages "
            f"{f['packages_total_mb']:6.1f} MB ({f['packages_total_mb'] / fp16:.0%} of fp16), worst cosine to "
            f"upstream {worst:.6f}"
        )
    mixed = results["variants"]["fp16-mixed"]
    share = mixed["packages_total_mb"] / fp16
    gate = [g for k, g in mixed["gates"].items() if k.endswith("cosine_min")]
    gate_ok = bool(gate) and all(g[2] == "passed" for g in gate)
    print(
        f"fp16-mixed: {share:.0%} of fp16's bytes (goal <= {MIXED_SHARE_GOAL:.0%}: "
        f"{'met' if share <= MIXED_SHARE_GOAL else 'MISSED'}); cosine gate {gate} "
        f"({'passed' if gate_ok else 'NOT passed'})"
    )
    for name, c in per_call.items():
        verdict = "met" if c["ratio"] <= INTERPRETER_GOAL else "MISSED"
        print(
            f"{name}: interpreter {c['mil_s'] * 1000:.0f} ms vs torch {c['torch_s'] * 1000:.0f} ms per call = "
            f"{c['ratio']:.2f}x (goal <= {INTERPRETER_GOAL:g}x: {verdict}); fp16 rounding "
            f"{c['fp16_rounding_share']:.0%} of it; the fp32 package {c['mil_fp32_s'] * 1000:.0f} ms = "
            f"{c['ratio_fp32']:.2f}x"
        )


if __name__ == "__main__":
    main()
