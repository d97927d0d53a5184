"""`zoo export kokoro` end to end on the small architecture: parity, MIL execution, runs, verify."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import export_small, read_wav

pytest.importorskip("kokoro", reason="kokoro is not installed (pip install zoo-tts[kokoro])")
pytestmark = pytest.mark.slow


def test_export_run_verify_small_fp32(zoo):
    report, entry, checks = export_small(zoo, "kokoro", "small-fp32")
    functions = {c["name"]: c["functions"] for c in entry["components"]}
    assert functions == {
        "predictor": ["tokens32", "tokens64", "tokens128", "tokens256", "tokens512"],
        "decoder": ["main"],
    }
    assert {c["name"] for c in entry["constants"]} == {"voices", "config"}
    passed = lambda *key: checks[key]["status"] == "passed"  # noqa: E731
    assert (
        passed("reference", "predictor", "float64_rel")
        and checks[("reference", "predictor", "float64_rel")]["value"] <= 1e-9
    )
    assert passed("reference", "predictor", "rel") and passed("reference", "predictor", "duration:mismatches")
    assert passed("reference", "decoder", "float64_spectral") and passed("reference", "decoder", "spectral_max")
    loop = checks[("reference", "loop:utterance", "spectral_max")]  # the run loop's whole utterance vs KModel.forward
    assert loop["status"] == "passed" and "kmodel_frames=" in loop["detail"]
    assert (
        passed("reference", "loop:durations", "max_abs")
        and checks[("reference", "loop:durations", "max_abs")]["value"] == 0
    )
    assert passed("mil", "predictor", "rel") and passed("mil", "predictor", "duration:mismatches")
    decoder = checks[("mil", "decoder", "spectral_max")]
    # the fp32 bound is measured at export time (that it catches the remainder trap is tested where the trap
    # is injected: tests/core/test_gates.py::test_remainder_trap_in_the_decoder_is_caught_by_its_fp32_mil_bound)
    assert decoder["status"] == "passed" and "fp32 perturbation" in decoder["basis"]
    if sys.platform != "darwin":  # macOS runs the level; elsewhere it is skipped with the reason
        assert checks[("coreml", "decoder", "")]["status"] == "skipped"
    config = json.loads((Path(report["path"]) / "constants" / "config.json").read_text())
    assert config["buckets"] == [32, 64, 128, 256, 512] and config["voices"] == ["random"]

    # text through the offline espeak G2P, on the packages
    hello = zoo.workdir / "hello.wav"
    run = json.loads(
        zoo("run", "kokoro", "Hello world.", "-o", str(hello), "--backend", "mil", "--json", check=True).stdout
    )
    assert run["calls"] == {"predictor.tokens32": 1, "decoder": 1} and run["frames"] > 0
    assert len(read_wav(hello)) == 600 * run["frames"]

    # the same phonemes and seed on the torch traceables and on the packages: same durations, same spectrum
    phonemes = "həlˈO wˈɜːld. hˌW ɑːɹ juː tədˈA?"
    args = ["--set", f"phonemes={phonemes}", "--json"]  # --seed 0: the exported weights' seed too
    t = json.loads(
        zoo(
            "run",
            "kokoro",
            "x",
            "-o",
            str(zoo.workdir / "t.wav"),
            "--backend",
            "torch",
            "--random-weights",
            "--variant",
            "small-fp32",
            *args,
            check=True,
        ).stdout
    )
    m = json.loads(
        zoo("run", "kokoro", "x", "-o", str(zoo.workdir / "m.wav"), "--backend", "mil", *args, check=True).stdout
    )
    assert t["frames"] == m["frames"] and t["info"]["pieces"] == m["info"]["pieces"]
    from zoo.core.validation.metrics import spectral_distance

    assert spectral_distance(read_wav(zoo.workdir / "m.wav"), read_wav(zoo.workdir / "t.wav")) <= 0.1

    bad = zoo("run", "kokoro", "x", "-o", str(zoo.workdir / "bad.wav"), "--backend", "mil", "--voice", "nobody")
    message = " ".join(bad.stderr.split())
    assert (
        bad.returncode == 2 and "unknown voice 'nobody'; this export has: random" in message and "clone" not in message
    )
    assert not (zoo.workdir / "bad.wav").exists()
    bad = zoo("run", "kokoro", "x", "-o", str(zoo.workdir / "bad.wav"), "--backend", "mil", "--voice", "randon")
    assert bad.returncode == 2 and "did you mean 'random'" in bad.stderr
    assert zoo("verify", "--execute", check=True).returncode == 0
