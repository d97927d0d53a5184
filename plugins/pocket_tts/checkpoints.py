"""The checkpoints pocket-tts ships: one per bundled config (``pocket_tts/config/<name>.yaml``).

Read from the installed package's YAML files without importing pocket_tts (nor torch), so
that ``zoo list`` and ``zoo info`` stay fast. Each config names its weights with a pinned
revision (``hf://owner/repo/path@revision``); that is what the registry records.

Families, by what the port has to handle:

* ``flowlm-6l`` / ``flowlm-24l`` — the architecture zoo ports (full attention, the LSD flow
  head, one Mimi with its SEANet decoder); the languages and dates differ in weights,
  tokenizer and text rules only;
* ``flowlm-6l-drifting`` — the same with a one-step drifting sampler head (the sample is the
  head's output for the noise, no time conditions);
* ``small`` — english_2m / 7m / 18m (and their REFL fine-tunes): grouped-query attention
  (2m, 7m), low-rank text embeddings (2m, 7m), a z projection before the sampler and EOS
  heads, a drifting (7m, 18m) or pointwise (2m) sampler head, a separate SEANet decoder with
  its own transformer (50-step context), a SentencePiece tokenizer.

A head zoo does not port (upstream's ``flow_matching``, which no bundled config uses) makes
its checkpoint unexportable, with the reason.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from ...core import Checkpoint

DEFAULT = "english"

#: sampler heads the port has (flowlm.Step)
PORTED_HEADS = ("lsd", "drifting", "pointwise")

NOT_PORTED = {
    "flow_matching": "its flow-matching sampler head is not ported (zoo ports the LSD, drifting and pointwise heads)",
}


def config_dir() -> Path | None:
    """pocket_tts/config of the installed package (found, not imported), or None."""
    spec = importlib.util.find_spec("pocket_tts")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "config"
    return path if path.is_dir() else None


def family(config: dict[str, Any]) -> str:
    flow_lm = config.get("flow_lm") or {}
    transformer = flow_lm.get("transformer") or {}
    mimi = config.get("mimi") or {}
    head = (flow_lm.get("flow") or {}).get("type", "lsd")
    if head not in PORTED_HEADS:
        return head  # a flow head the port does not know (flow_matching): not ported
    if (
        mimi.get("decoder_seanet") is not None
        or transformer.get("num_kv_heads")
        or (flow_lm.get("lookup_table") or {}).get("rank")
        or flow_lm.get("z_dim")
    ):
        return "small"
    return f"flowlm-{transformer.get('num_layers', '?')}l" + ("" if head == "lsd" else f"-{head}")


def _description(text: str) -> str:
    """The config's leading comment (what upstream says of it), if any."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    return " ".join(x for x in lines if x)


def _pinned(url: str) -> tuple[str | None, str | None]:
    """``hf://owner/repo/path@revision`` -> (owner/repo, revision)."""
    body, _, revision = url.removeprefix("hf://").partition("@")
    parts = body.split("/")
    return ("/".join(parts[:2]) if len(parts) >= 2 else None), (revision or None)


@functools.lru_cache(maxsize=1)
def discover() -> dict[str, Checkpoint]:
    """Every bundled config as a Checkpoint, the default first (empty without pocket_tts)."""
    import yaml

    folder = config_dir()
    if folder is None:
        return {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found: dict[str, Checkpoint] = {}
    for path in sorted(folder.glob("*.yaml"), key=lambda p: (p.stem != DEFAULT, p.stem)):
        try:
            text = path.read_text(encoding="utf-8")
            config = yaml.load(text, Loader=loader) or {}
            kind = family(config)
        except (
            OSError,
            UnicodeDecodeError,
            yaml.YAMLError,
            AttributeError,
        ) as exc:  # one bad file: that checkpoint only
            found[path.stem] = Checkpoint(name=path.stem, unsupported=f"its config {path} could not be read: {exc}")
            continue
        repo, revision = _pinned(str(config.get("weights_path", "")))
        found[path.stem] = Checkpoint(
            name=path.stem,
            description=_description(text),
            hub_repo=repo,
            revision=revision,
            source=str(config.get("weights_path", "")),
            family=kind,
            unsupported=NOT_PORTED.get(kind, ""),
        )
    return found
