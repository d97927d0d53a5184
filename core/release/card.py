"""The model card of a published folder (its ``README.md``): Hugging Face front matter, then what the
export is, where it came from, its packages, how it was validated and compressed, and how to run it —
every figure taken from the registry entry and the manifest as they are, never written by a person,
so the card and the registry cannot disagree (the tests read both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry.entry import ExportEntry

PIPELINE_TAGS = {"audio": "text-to-speech", "embedding": "feature-extraction", "tokens": "audio-to-audio"}


def figure(value: Any) -> str:
    """A recorded value as the card prints it (6 significant digits; the tests parse it back)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.6g}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def front_matter(entry: ExportEntry, spec: Any) -> str:
    lines = ["---", f"license: {getattr(spec, 'license', '') or 'other'}"]
    checkpoint = spec.checkpoints.get(entry.checkpoint(spec.default_checkpoint)) if spec is not None else None
    base = (checkpoint.hub_repo if checkpoint is not None and checkpoint.hub_repo else None) or (
        spec.hub_repo if spec is not None else None
    )
    if base:
        lines.append(f"base_model: {base}")
    languages = sorted(spec.languages) if spec is not None else []
    if languages:
        lines += ["language:", *[f"- {code}" for code in languages]]
    lines += ["library_name: coreml", f"pipeline_tag: {PIPELINE_TAGS[spec.output if spec is not None else 'audio']}"]
    lines += ["tags:", "- coreml", "- zoo", f"- {entry.model}", "---", ""]
    return "\n".join(lines)


def _step_lines(step: dict[str, Any], depth: int) -> list[str]:
    pad = "  " * depth
    when = f" (only {step['optional']})" if step.get("optional") else ""
    if step["kind"] == "repeat":
        lines = [f"{pad}- **for each {step['scope']}**{when}, until {step['until']}:"]
        for inner in step["steps"]:
            lines += _step_lines(inner, depth + 1)
        return lines
    if step["kind"] == "reset_states":
        return [f"{pad}- reset every package's states: {step['detail']}{when}"]
    if step["kind"] == "load_states":
        return [f"{pad}- load `{step['component']}`'s states: {step['detail']}{when}"]
    names = "|".join(step["functions"])
    head = f"{pad}- call `{step['component']}.{names}`{when}"
    if step.get("choose"):
        head += f"; function: {step['choose']}"
    if step.get("overlaps"):
        head += f"; runs {step['overlaps']}"
    lines = [head]
    for feed in step["feeds"]:
        lines.append(f"{pad}  - in `{feed['input']}` ← {feed['source']}: {feed['detail']}")
    for use in step["outputs"]:
        lines.append(f"{pad}  - out `{use['output']}` → {use['detail']}")
    if step.get("states"):
        lines.append(
            f"{pad}  - CoreML states: {len(step['states'])} (`{'`, `'.join(step['states'][:4])}`"
            + (", …)" if len(step["states"]) > 4 else ")")
        )
    return lines


def loop_section(loop: dict[str, Any] | None, plugin: str) -> str:
    """What a native app implements, from the manifest's loop contract (the plugin's, checked against its
    run loop by the tests)."""
    if loop is None:
        return (
            f"A native app calls the packages as `manifest.json` describes them; plugin `{plugin}` declares no loop "
            "contract, so the loop around the calls is its run loop's code.\n"
        )
    front = loop["front_end"]
    out = ["### What a native app implements\n", f"{loop['summary']}\n"]
    files = ", ".join(f"`{f}`" for f in front["files"])
    out.append(f"- **front end** ({front['kind']}): {front['detail']}" + (f"; reads {files}" if files else ""))
    if front["languages"]:
        out.append(f"  - languages: {', '.join(front['languages'])}")
    if loop.get("voices"):
        voices = loop["voices"]
        out.append(f"- **voices**: {voices['detail']}")
        if voices["names"]:
            out.append(f"  - bundled: {', '.join(voices['names'])}")
    out.append("- **calls**, in this order:")
    for step in loop["steps"]:
        out += _step_lines(step, 1)
    out.append(f"- **result**: {loop['result']}")
    out.append(
        "\nThe same contract, machine-readable: `manifest.json` → `loop` (the sources of inputs: "
        + "; ".join(f"{k} = {v}" for k, v in loop["sources"].items())
        + "). zoo's tests run the plugin's loop on a recording runtime and check every call against it.\n"
    )
    return "\n".join(out)


def _picture(figures: dict[str, Any], name: str) -> list[str]:
    figure = figures.get(name)
    return [f"\n![{figure.alt}]({figure.path})\n", f"*{figure.caption}*\n"] if figure is not None else []


def model_card(entry: ExportEntry, manifest: dict[str, Any], spec: Any, figures: Any = ()) -> str:
    """``README.md`` of the folder: ``spec`` is the model's ModelSpec when its plugin is installed;
    ``figures``: the pictures drawn into the folder (``figures.Figure``), embedded where they belong."""
    drawn = {Path(f.path).stem: f for f in figures}
    out = [front_matter(entry, spec)]
    if entry.random_weights:
        out.append(
            "> **Not a usable model.** Made from the real architecture with seeded random weights "
            f"({entry.weights.get('source', 'random')}): the packages run and were validated against upstream "
            "with the same weights, but they make no speech and describe no voice.\n"
        )
    out.append(f"# {entry.model} — {entry.variant_name} (CoreML)\n")
    if spec is not None:
        out.append(f"{spec.summary}\n")
    out.append("## Packages\n")
    out.append("| package | functions | MB | needs | inputs → outputs |")
    out.append("| --- | --- | --- | --- | --- |")
    sizes = {c.name: c.bytes for c in entry.components}
    for name, package in manifest["packages"].items():
        first = next(iter(package["functions"].values()))
        io = ", ".join(i["name"] for i in first["inputs"]) + " → " + ", ".join(o["name"] for o in first["outputs"])
        out.append(
            f"| `{name}` | {', '.join(package['functions'])} | {sizes.get(name, 0) / 1e6:.2f} | {package['needs']} "
            f"| {_cell(io)} |"
        )
    out.append("\nShapes, dtypes, states and flexible ranges of every function: `manifest.json`.\n")
    out.append("## Provenance\n")
    out.append(f"- export `{entry.id}`, registered {entry.created_at}, validation level **{entry.validation_level}**")
    out.append(f"- plugin {entry.plugin.get('name')} {entry.plugin.get('version')}; zoo {manifest['zoo_version']}")
    out.append(
        f"- weights: {entry.weights.get('source', '')}"
        + (f", checkpoint {entry.checkpoint()}" if entry.checkpoint() else "")
    )
    for file, digest in manifest["weights"]["files"].items():
        out.append(f"  - `{file}` sha256 `{digest}`")
    notices = manifest.get("notices") or {}
    for path in notices.get("files", []):
        out.append(f"- upstream license/notice: [`{path}`]({path}) (from {notices.get('source')})")
    variant = manifest["variant"]
    out.append(
        f"- variant {variant['name']}: {variant['precision']}, target {variant['target']}, compression "
        f"{variant['compression']}\n"
    )
    out.append("## Validation\n")
    out.append("| level | component | metric | value | bound | status | basis or reason |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for v in entry.validation:
        why = _cell(v.get("basis") or v.get("reason") or "")
        out.append(
            f"| {v.get('level')} | {_cell(v.get('component'))} | {v.get('metric', '')} | {figure(v.get('value', ''))} "
            f"| {figure(v.get('threshold', ''))} | {v.get('status')} | {why} |"
        )
    out += _picture(drawn, "spectrograms")
    compressed = [c for c in entry.components if c.compression]
    if compressed:
        out.append("\n## Compression\n")
        out.append("| package | mode | weights | worst weight SNR dB | output SNR dB | MB before → after |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for c in compressed:
            r = c.compression or {}
            worst = figure(r.get("worst_weight_snr_db"))
            out.append(
                f"| `{c.name}` | {r.get('mode')} | {r.get('compressed_weights')} | {worst} "
                f"| {figure(r.get('output_snr_db', '-'))} | {r.get('bytes_before', 0) / 1e6:.2f} → "
                f"{r.get('bytes_after', 0) / 1e6:.2f} |"
            )
        out += _picture(drawn, "compression")
    if entry.eval:
        out.append("\n## zoo eval\n")
        out.append("| prompts | backend | export WER | reference WER | QoI |")
        out.append("| --- | --- | --- | --- | --- |")
        for row in entry.eval:
            out.append(
                f"| {row.get('prompts')} | {row.get('backend')} | {figure(row.get('export_wer', '-'))} "
                f"| {figure(row.get('reference_wer', '-'))} | {figure(row.get('qoi', '-'))} |"
            )
        out += _picture(drawn, "eval")
    out.append("\n## Running it\n")
    run = (
        f"zoo run {entry.model} --voice ref.wav -o out.npy --backend coreml"
        if spec is not None and spec.input == "voice"
        else f'zoo run {entry.model} "Hello." -o hello.wav --backend coreml'
    )
    out.append(f"With zoo (the export registered): `{run}` (`--backend mil` on Linux).")
    out.append(loop_section(manifest.get("loop"), str(entry.plugin.get("name"))))
    out.append("## Limitations\n")
    skipped = sorted(
        {
            f"{v.get('level')}: {v.get('reason') or v.get('basis') or 'skipped'}"
            for v in entry.validation
            if v.get("status") == "skipped"
        }
    )
    if notices.get("missing"):
        skipped.append(f"license: {notices['missing']}; see the upstream model's own terms")
    for line in skipped or ["none recorded"]:
        out.append(f"- {_cell(line)}")
    return "\n".join(out) + "\n"
