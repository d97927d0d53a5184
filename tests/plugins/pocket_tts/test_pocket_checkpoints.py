"""pocket_tts checkpoints: every config pocket-tts ships is listed, each exportable one builds
with random weights and matches upstream, and each export carries its own weights and rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import Zoo

pytest.importorskip("pocket_tts")

from zoo.core import WeightsSource  # noqa: E402
from zoo.core.host.plugins import PluginHost  # noqa: E402
from zoo.core.host.session import ModelSession  # noqa: E402
from zoo.core.registry.store import Registry  # noqa: E402
from zoo.plugins.pocket_tts import checkpoints, reference  # noqa: E402

HOST = PluginHost()
SPEC = HOST.model("pocket_tts")
PORTED = [name for name, c in SPEC.checkpoints.items() if not c.unsupported]
#: one checkpoint per family: 6-layer, 24-layer, drifting head, small architecture
FAMILY_EXAMPLES = ("english", "french_24l", "english_drifting_26-09", "english_7m_2026-10")


def test_every_bundled_config_is_a_checkpoint_with_its_pinned_revision():
    import yaml

    files = sorted(checkpoints.config_dir().glob("*.yaml"))
    assert sorted(SPEC.checkpoints) == sorted(p.stem for p in files) and len(files) >= 27
    assert SPEC.default_checkpoint == "english"
    for path in files:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        c = SPEC.checkpoints[path.stem]
        assert c.source == config["weights_path"] and c.source.endswith("@" + c.revision) and len(c.revision) == 40
        flow_lm = config["flow_lm"]
        layers = flow_lm["transformer"]["num_layers"]
        head = flow_lm["flow"].get("type", "lsd")
        if c.family.startswith("flowlm-"):  # full attention, full-rank table, one Mimi
            assert c.family == f"flowlm-{layers}l" + ("" if head == "lsd" else f"-{head}") and not c.unsupported
            assert (
                "decoder_seanet" not in config["mimi"]
                and not flow_lm["transformer"].get("num_kv_heads")
                and not flow_lm.get("z_dim")
            )
        elif c.family == "small":  # a separate decoder (50-step context), z projection, SentencePiece
            assert config["mimi"]["decoder_transformer"]["context"] == 50 and flow_lm["z_dim"] and not c.unsupported
            assert flow_lm["lookup_table"]["tokenizer_path"].split("@")[0].endswith(".model")
        else:
            assert c.unsupported and c.family in checkpoints.NOT_PORTED
    families = [c.family for c in SPEC.checkpoints.values()]
    # pocket-tts 4.0.1: 12 6-layer, 8 24-layer, 1 drifting, 6 small; every one exportable
    assert families.count("small") == 6 and families.count("flowlm-6l-drifting") == 1 and len(PORTED) == len(files)


def test_family_reads_what_the_port_depends_on():
    base = {"flow_lm": {"transformer": {"num_layers": 6}, "flow": {}, "lookup_table": {}}, "mimi": {}}
    assert checkpoints.family(base) == "flowlm-6l"
    gqa = json.loads(json.dumps(base))
    gqa["flow_lm"]["transformer"]["num_kv_heads"] = 2
    drifting = json.loads(json.dumps(base))
    drifting["flow_lm"]["flow"]["type"] = "drifting"
    matching = json.loads(json.dumps(base))
    matching["flow_lm"]["flow"]["type"] = "flow_matching"
    separate = json.loads(json.dumps(base))
    separate["mimi"]["decoder_seanet"] = {}
    pointwise = json.loads(json.dumps(base))
    pointwise["flow_lm"]["flow"]["type"] = "pointwise"
    projected = json.loads(json.dumps(base))
    projected["flow_lm"]["z_dim"] = 64
    matching_small = json.loads(json.dumps(separate))
    matching_small["flow_lm"]["flow"]["type"] = "flow_matching"
    assert [
        checkpoints.family(c) for c in (gqa, drifting, matching, separate, pointwise, projected, matching_small)
    ] == ["small", "flowlm-6l-drifting", "flow_matching", "small", "flowlm-6l-pointwise", "small", "flow_matching"]
    assert "flow_matching" in checkpoints.NOT_PORTED


@pytest.mark.parametrize("name", PORTED)
def test_each_ported_checkpoint_builds_and_matches_upstream(name):
    """Small size, random weights: the checkpoint's own config (rules, temperature), and every
    function of every component (flowlm prefill and step, mimi, voice_encoder) against upstream
    on the same inputs and state, eagerly (the conversions are the family exports' to test)."""
    session = ModelSession(HOST, "pocket_tts", "small-fp32", WeightsSource.random(0), checkpoint=name)
    assert session.variant.checkpoint == name
    ref = session.reference().model
    config = reference.bundled_config(name)
    assert ref.tts.config.replace_characters == config.replace_characters
    assert float(ref.tts.temp) == config.default_temperature
    traceables = session.traceables()
    step = traceables["flowlm"]["step"]
    ex = step.examples[1]
    want = reference.upstream_step(ref.tts, 1, ex["latent"], ex["noise"], ex["kv"], ex["pos"])  # upstream's own step
    assert set(want) == {"latent_out", "eos_logit", "kv_new"} and np.array_equal(
        want["latent_out"], step.reference(**ex)["latent_out"]
    )
    checked = []
    for component, functions in traceables.items():
        for function, traceable in functions.items() if isinstance(functions, dict) else [("main", functions)]:
            for ex in traceable.examples:
                ours, want = traceable.run(ex), traceable.reference(**ex)
                for key, expected in want.items():
                    scale = max(1.0, float(np.max(np.abs(expected))))
                    # fp32 port vs fp32 upstream, measured on all 27 checkpoints (of max(1, scale)): step and
                    # voice_encoder 0.0 (upstream's ops in its order), prefill 6.1e-7, mimi 5.1e-7 (another
                    # summation order: the padded chunk, the fixed window); 1e-5 leaves room for that only
                    assert float(np.max(np.abs(ours[key] - expected))) <= 1e-5 * scale, (name, component, function, key)
            checked.append(f"{component}.{function}")
    assert sorted(checked) == ["flowlm.prefill", "flowlm.step", "mimi.main", "voice_encoder.main"]


def test_a_checkpoint_the_port_lacks_is_refused_with_its_reason():
    """No bundled config needs it now; a config with upstream's flow_matching head (ported by none) would."""
    from dataclasses import replace

    from zoo.core import Checkpoint
    from zoo.core.host.session import resolve_variant

    reason = checkpoints.NOT_PORTED["flow_matching"]
    spec = replace(
        SPEC,
        checkpoints={**SPEC.checkpoints, "future": Checkpoint("future", family="flow_matching", unsupported=reason)},
    )
    with pytest.raises(
        ValueError, match="checkpoint 'future' cannot be exported: its flow-matching sampler head is not ported"
    ):
        resolve_variant(spec, "small-fp32", "future")
    assert resolve_variant(spec, "small-fp32", "english_7m_2026-10").checkpoint == "english_7m_2026-10"


def test_random_weights_differ_between_checkpoints():
    a = reference.random_seed(0, "english")
    assert a == 0 and len({reference.random_seed(0, n) for n in PORTED}) == len(PORTED)


def test_unknown_or_unported_checkpoint_is_refused_before_loading(zoo: Zoo):
    proc = zoo("export", "pocket_tts", "--random-weights", "--checkpoint", "frnch")
    assert proc.returncode == 2 and "no checkpoint 'frnch'; did you mean 'french'?" in " ".join(proc.stderr.split())
    proc = zoo("export", "pocket_tts", "--random-weights", "--checkpoint", "")
    assert proc.returncode == 2 and "--checkpoint is empty" in " ".join(proc.stderr.split())
    proc = zoo("run", "kokoro", "Hello.", "-o", str(zoo.workdir / "x.wav"), "--checkpoint", "french")
    assert proc.returncode == 2 and "has no checkpoints" in proc.stderr
    assert not Path(zoo.registry).exists() or not Registry(zoo.registry).read().get("exports", [])


@pytest.mark.slow
def test_each_export_has_its_own_weights_rules_and_mimi(zoo: Zoo):
    """english, french_24l, english_drifting_26-09 and english_7m_2026-10 (one per family), small:
    whole-loop parity with upstream generate_audio recorded by each, different Mimi packages
    (their weights differ), each export's own depth, text rules and tokenizer format, the
    registry names the checkpoint's pinned source, and run/info/verify select by checkpoint."""
    ids, reports = {}, {}
    for name in FAMILY_EXAMPLES:
        proc = zoo(
            "export",
            "pocket_tts",
            "--random-weights",
            "--variant",
            "small-fp32",
            "--checkpoint",
            name,
            "--out",
            str(zoo.out),
            "--json",
            check=True,
        )
        report = json.loads(proc.stdout)
        assert report["ok"] and report["validation_level"] == "mil"
        ids[name], reports[name] = report["id"], report
    entries = {e["id"]: e for e in Registry(zoo.registry).read().get("exports", [])}
    en, fr = entries[ids["english"]], entries[ids["french_24l"]]
    for name in FAMILY_EXAMPLES:
        entry = entries[ids[name]]
        loop = next(v for v in entry["validation"] if v["component"] == "loop:utterance" and v["level"] == "reference")
        assert loop["status"] == "passed" and loop["value"] <= 1e-3  # the run loop vs upstream generate_audio
        assert entry["variant"]["options"]["checkpoint"] == name
        assert entry["weights"]["checkpoint"]["source"] == SPEC.checkpoints[name].source
    mimi = {
        name: next(c["sha256"] for c in entries[ids[name]]["components"] if c["name"] == "mimi")
        for name in FAMILY_EXAMPLES
    }
    assert len(set(mimi.values())) == len(FAMILY_EXAMPLES)  # never one Mimi shared across checkpoints
    small = Path(zoo.out) / Path(entries[ids["english_7m_2026-10"]]["path"]).name / "constants"
    assert (small / "tokenizer.model").is_file() and not (
        small / "tokenizer.json"
    ).exists()  # SentencePiece, as shipped
    assert (
        json.loads((small / "config.json").read_text())["kv_width"] == 2 * 64
    )  # 2 key/value heads of 64, not attn_dim 512
    rules, layers = {}, {}
    for name, entry in (("english", en), ("french_24l", fr)):
        config = json.loads((Path(zoo.out) / Path(entry["path"]).name / "constants" / "config.json").read_text())
        rules[name] = dict(map(tuple, config["text_rules"]["replace_characters"]))
        layers[name] = config["kv_layers"]
    assert "«" in rules["french_24l"] and "«" not in rules["english"]
    assert layers == {"english": 2, "french_24l": 8}  # small size keeps the depth ratio
    for name in ("english", "french_24l"):  # run picks the latest valid export of the checkpoint asked for
        out = json.loads(
            zoo(
                "run",
                "pocket_tts",
                "Bonjour.",
                "-o",
                str(zoo.workdir / f"{name}.wav"),
                "--backend",
                "mil",
                "--checkpoint",
                name,
                "--set",
                "temperature=0",
                "--set",
                "eos_threshold=1e9",
                "--set",
                "frames_after_eos=0",
                "--json",
                check=True,
            ).stdout
        )
        assert out["source"] == f"export {ids[name]}"
    assert [
        e["id"]
        for e in json.loads(zoo("info", "pocket_tts", "--checkpoint", "french_24l", "--json", check=True).stdout)[
            "exports"
        ]
    ] == [ids["french_24l"]]
    assert json.loads(zoo("verify", "--checkpoint", "english", "--json", check=True).stdout)["checked"] == [
        ids["english"]
    ]
    proc = zoo(
        "run", "pocket_tts", "Hallo.", "-o", str(zoo.workdir / "de.wav"), "--backend", "mil", "--checkpoint", "german"
    )
    assert proc.returncode == 1 and "run `zoo export pocket_tts --checkpoint german` first" in " ".join(
        proc.stderr.split()
    )


def test_an_unreadable_config_takes_only_its_checkpoint_down(tmp_path, monkeypatch):
    for name in ("english", "french"):
        (tmp_path / f"{name}.yaml").write_text(
            (checkpoints.config_dir() / f"{name}.yaml").read_text(encoding="utf-8"), encoding="utf-8"
        )
    (tmp_path / "broken.yaml").write_text("flow_lm: [unclosed\n", encoding="utf-8")
    monkeypatch.setattr(checkpoints, "config_dir", lambda: tmp_path)
    checkpoints.discover.cache_clear()
    try:
        found = checkpoints.discover()
    finally:
        monkeypatch.undo()
        checkpoints.discover.cache_clear()
    assert list(found) == ["english", "broken", "french"]  # the default first
    assert "could not be read" in found["broken"].unsupported and not found["french"].unsupported


def test_loop_parity_sees_the_constants_as_stored(tmp_path, monkeypatch):
    """An fp16 export keeps the text embedding and voice cache in fp16 and the run loop reads
    them; upstream gets them rounded alike, so the loop, not the storage, is compared. Measured
    (small-fp16, seed 0, rel): english 5.6e-7 with it; without it the storage difference moves an
    EOS and the audio lengths differ (126,720 vs 257,280 samples). english_2026-09_2: 2.1e-6 vs
    1.8e-4 (0.0109 before the stand-in tokenizer's word-initial marks were dropped)."""
    import contextlib

    from zoo.plugins.pocket_tts import parity

    session = ModelSession(HOST, "pocket_tts", "small-fp16", WeightsSource.random(0), checkpoint="english")
    runtime = session.torch_runtime(tmp_path)
    ref, options = session.reference().model, None
    (case,) = parity.cases(runtime, ref, options)
    value = float(np.max(np.abs(case.actual - case.expected)) / np.max(np.abs(case.expected)))
    assert len(case.actual) == len(case.expected) and value <= 1e-3
    monkeypatch.setattr(
        parity, "stored_like_the_export", lambda runtime, tts, name, voice: contextlib.nullcontext(voice)
    )
    (bare,) = parity.cases(runtime, ref, options)
    n = min(len(bare.actual), len(bare.expected))
    assert (
        len(bare.actual) != len(bare.expected)
        or float(np.max(np.abs(bare.actual[:n] - bare.expected[:n])) / np.max(np.abs(bare.expected))) > 1e-3
    )


def test_the_stored_text_table_is_upstreams_conditioner_output(tmp_path):
    """The small family's low-rank table is exported projected (embedding x projection); loop parity
    hands upstream the stored table, so the table is first compared with upstream's own
    conditioner: a table with rows shifted by one id, or left unprojected, is refused."""
    from types import SimpleNamespace

    from safetensors.numpy import load_file, save_file

    from zoo.plugins.pocket_tts import parity

    session = ModelSession(HOST, "pocket_tts", "small-fp16", WeightsSource.random(0), checkpoint="english_7m_2026-10")
    runtime = session.torch_runtime(tmp_path)
    tts, voice = session.reference().model.tts, session.reference().model.voices["random"]
    constants = dict(runtime.constants)
    with parity.stored_like_the_export(runtime, tts, "random", voice):  # as exported: accepted (fp16: <= 4.9e-4)
        assert tts.flow_lm.conditioner.proj is None
    assert tts.flow_lm.conditioner.proj is not None  # restored
    stored = load_file(str(constants["flowlm"]))
    for name, table in (
        ("shifted", np.roll(stored["text_embedding"], 1, axis=0)),
        ("unprojected", tts.flow_lm.conditioner.embed.weight.detach().numpy().astype(np.float16)),
    ):
        path = tmp_path / f"{name}.safetensors"
        save_file({**stored, "text_embedding": np.ascontiguousarray(table)}, str(path))
        bad = SimpleNamespace(constants={**constants, "flowlm": path})
        with pytest.raises(ValueError, match="upstream's conditioner"):
            with parity.stored_like_the_export(bad, tts, "random", voice):
                pass


def test_stand_in_tokenizers_in_both_formats(tmp_path):
    """The small family's configs name a SentencePiece model, the others a tokenizers JSON: the
    stand-in is written in the named format with the vocabulary size, upstream's tokenizer class
    loads it, and the run loop's reader gives upstream's ids for it; a damaged file is named."""
    from pocket_tts.modules.text_conditioner import build_tokenizer

    from zoo.plugins.pocket_tts.text import TextRules, split
    from zoo.plugins.pocket_tts.tokenizer import build_stand_in, open_tokenizer

    text = "Hello there. The quick brown fox, jumps!"
    for kind in ("sentencepiece", "tokenizers"):
        path = build_stand_in(kind, 4000, tmp_path / kind)
        assert path.suffix == (".model" if kind == "sentencepiece" else ".json")
        ours, theirs = open_tokenizer(path), build_tokenizer(4000, str(path), kind)
        assert ours.vocab_size == 4000 and ours.encode(text) == theirs.encode(text) and len(ours.encode(text)) > 5
        assert ours.decode(ours.encode(text)) == text
        # a mark after a space is the boundary piece then the mark, as in the real vocabularies: the
        # splitter (upstream's rule: the marks are encode(",;:") without its first id) cuts at commas
        assert [ours.decode([i]) for i in ours.encode(",;:")] == ["", ",", ";", ":"]
        long = "It reads every chunk with its tokenizer, prefills the cache after the voice, and steps until the end."
        assert len(split(long, ours.encode, ours.decode, 20, TextRules())) == 3
    from zoo.plugins.pocket_tts.tokenizer import stand_in_file

    assert (
        stand_in_file("sentencepiece", "hf://o/r/tokenizer.json@abc") == "tokenizer.json"
    )  # upstream: the suffix decides too
    damaged = tmp_path / "tokenizer.model"
    damaged.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="tokenizer.model is not a readable SentencePiece model"):
        open_tokenizer(damaged)


def test_small_family_weights_from_a_local_directory(tmp_path):
    """english_2m laid out like the hub repositories (languages/<name>/model.safetensors beside its
    tokenizer.model): the SentencePiece tokenizer is found, hashed and kept as the reference's,
    the weights load into the small architecture; a damaged tokenizer.model is named."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from zoo.plugins.pocket_tts.options import PocketOptions

    name = "english_2m_2026-10"
    options = PocketOptions("full", checkpoint=name, voice_seconds=2.0)
    random_ref = reference.load(WeightsSource.random(5), options).model
    folder = tmp_path / "languages" / name
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in random_ref.tts.state_dict().items()}, str(folder / "model.safetensors"))
    shutil.copyfile(random_ref.tokenizer_path, folder / "tokenizer.model")
    loaded = reference.load(WeightsSource.local(tmp_path), options)
    assert loaded.model.tokenizer_path == folder / "tokenizer.model" and "tokenizer.model" in loaded.files
    for (key, a), b in zip(random_ref.tts.state_dict().items(), loaded.model.tts.state_dict().values()):
        assert torch.equal(a, b), key
    (folder / "tokenizer.model").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="tokenizer.model is not a readable SentencePiece model"):
        reference.load(WeightsSource.local(tmp_path), options)


def test_loading_upstream_leaves_torch_threads_as_they_were():
    """Upstream's tts_model sets torch to one thread for the whole process when imported; the plugin's
    loaders import it through reference.import_upstream, which puts the count back (a fresh process:
    here pocket_tts is imported already)."""
    import subprocess
    import sys

    code = (
        "import torch; torch.set_num_threads(3)\n"
        "from zoo.plugins.pocket_tts import reference\n"
        "reference.bundled_config('english', size='small')\n"
        "import pocket_tts.models.tts_model\n"
        "assert 'pocket_tts.models.tts_model' in __import__('sys').modules\n"
        "print(torch.get_num_threads())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "3", proc.stdout
