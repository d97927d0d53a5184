"""Small helpers shared by test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_wav(path: Path, rate: int = 24000) -> np.ndarray:
    """A WAV written by `zoo run` at ``rate``, as floats in [-1, 1]."""
    from zoo.core.kit.audio import read_wav as read

    audio, got = read(path)
    assert got == rate
    return audio.astype(np.float64)


def upstream_decoder_name(key: str) -> str:
    """transformers' acoustic-decoder parameter name -> the VibeVoice checkpoint's (below
    ``...acoustic_tokenizer.decoder.``), from the layout facts: upstream's stage 0 is transformers'
    stem, and its convolutions nest one level deeper."""
    if key.startswith("stem.conv.conv."):
        key = key.replace("stem.conv.conv.", "upsample_layers.0.0.conv.conv.conv.")
    elif key.startswith("stem.stage."):
        key = key.replace("stem.stage.", "stages.0.")
    elif key.startswith("conv_layers."):
        index, rest = key[len("conv_layers.") :].split(".", 1)
        key = (
            f"upsample_layers.{int(index) + 1}.0.{rest}"
            if rest.startswith("convtr.")
            else f"stages.{int(index) + 1}.{rest[len('stage.') :]}"
        )
    elif key.startswith("head."):
        key = "head.conv." + key[len("head.") :]
    return key.replace("mixer.conv.", "mixer.conv.conv.conv.")


def export_small(zoo, model: str, variant: str) -> tuple[dict, dict, dict]:
    """`zoo export MODEL --random-weights --variant VARIANT`, which must register at level mil:
    (the JSON report, the registry entry, its validation records by (level, component, metric))."""
    import json

    from zoo.core.registry.store import Registry

    report = json.loads(
        zoo(
            "export", model, "--random-weights", "--variant", variant, "--out", str(zoo.out), "--json", check=True
        ).stdout
    )
    assert report["ok"] and report["validation_level"] == "mil"
    entry = next(e for e in Registry(zoo.registry).read().get("exports", []) if e["id"] == report["id"])
    checks = {(v["level"], v["component"], v.get("metric", "")): v for v in entry["validation"]}
    return report, entry, checks


def passed_on(check: dict, *bases: str) -> bool:
    """A recorded check passed, and its bound stands on one of ``bases`` (words its basis names).
    Both must hold: a failed check never passes for a good-looking basis."""
    return check.get("status") == "passed" and any(b in check.get("basis", "") for b in bases)


def publish_and_verify(zoo, export_id: str, model: str) -> dict:
    """`zoo publish` the export, then `zoo verify DIR --execute` from the folder alone (every package on
    its recorded parity inputs by the MIL interpreter): both pass; the manifest validates against the
    shipped schema, carries the plugin's loop contract for the folder's own constants and lists every
    file. Returns the manifest."""
    import json

    import jsonschema

    from zoo.core.host.plugins import PluginHost
    from zoo.core.release.manifest import SCHEMA_FILE

    folder = zoo.workdir / f"published-{export_id}"
    manifest = json.loads(zoo("publish", export_id, "--dir", str(folder), "--json", check=True).stdout)
    jsonschema.validate(manifest, json.loads(SCHEMA_FILE.read_text()))
    host = PluginHost()
    constants = {name: folder / c["path"] for name, c in manifest["constants"].items()}
    contract = host.call(host.models[model], "loop_contract", constants=constants)
    assert manifest["loop"] == json.loads(json.dumps(contract.as_dict()))
    from zoo.core.coreml.tools import load_package_spec

    for package in manifest["packages"].values():  # the I/O coremltools reads from each package's spec
        spec = load_package_spec(folder / package["path"])
        described = {f.name: f for f in spec.description.functions} or {"main": spec.description}
        assert set(package["functions"]) == set(described)
        for name, fn in described.items():
            listed = package["functions"][name]
            assert [(i["name"], i["shape"]) for i in listed["inputs"]] == [
                (x.name, list(x.type.multiArrayType.shape)) for x in fn.input
            ]
            assert [o["name"] for o in listed["outputs"]] == [x.name for x in fn.output]
            assert [s["name"] for s in listed["states"]] == [x.name for x in fn.state]
    verified = json.loads(zoo("verify", str(folder), "--execute", "--json", check=True).stdout)
    assert verified["ok"] and {c["component"] for c in verified["executed"]} == set(manifest["packages"])
    assert all(c["status"] == "passed" for c in verified["executed"]), verified["executed"]
    card = (folder / "README.md").read_text()
    assert "### What a native app implements" in card and card.lstrip("-\n").startswith("license:")
    return manifest


def count_clustering(monkeypatch) -> list[int]:
    """The table sizes this process clusters from now on (``palette._lut_kmeans`` counted; a worker
    process's clustering is not seen here)."""
    from zoo.core.compression import palette

    clustered: list[int] = []
    real = palette._lut_kmeans

    def counted(flat, size):
        clustered.append(size)
        return real(flat, size)

    monkeypatch.setattr(palette, "_lut_kmeans", counted)
    return clustered


def save_builder_program(path, fn, specs: list, target: str = "iOS17", precision: str = "fp32"):
    """``fn`` (coremltools' MIL builder calls on placeholders ``specs``) converted as it is (no
    passes) for ``target`` at ``precision`` and saved at ``path``; returns ``path``."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    program = mb.program(input_specs=specs, opset_version=getattr(ct.target, target))(fn)
    model = ct.convert(
        program,
        source="milinternal",
        convert_to="mlprogram",
        minimum_deployment_target=getattr(ct.target, target),
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        pass_pipeline=ct.PassPipeline.EMPTY,
    )
    model.save(str(path))
    return path
