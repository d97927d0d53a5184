"""The model card's pictures (small PNGs in ``figures/``), each drawn from the export's own records so
the card and the registry cannot disagree:

- ``spectrograms.png``: one parity case of the package that outputs audio — the reference's audio (the
  traceable's recorded output), the export's (the published package run on the same recorded inputs
  by zoo's MIL interpreter) and their difference, on one dB scale;
- ``compression.png`` (compressed variants): the bits chosen per weight, per package, and each
  package's output SNR against its gate, as the registry records them;
- ``eval.png`` (when ``zoo eval`` recorded each prompt's rate): the WER (CER) per prompt, export and
  reference.

matplotlib draws off screen (Agg); nothing here runs at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..registry.entry import ExportEntry

FIGURES = "figures"
#: the spectrogram's analysis: 512-sample Hann frames every 128 samples (21 ms / 5 ms at 24 kHz)
N_FFT, HOP = 512, 128
#: the dB range shown below the reference's loudest bin (quieter is drawn as the floor)
DYNAMIC_RANGE_DB = 80.0
#: the longest stretch of a parity case drawn (samples): a picture of 10 s at 24 kHz stays legible
MAX_SAMPLES = 240_000
DPI = 80


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the folder
    alt: str
    caption: str


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _saved(fig: Any, folder: Path, name: str, alt: str, caption: str) -> Figure:
    """``fig`` written as ``figures/<name>.png`` in ``folder`` (then closed), as the card embeds it."""
    path = Path(FIGURES) / f"{name}.png"
    fig.savefig(folder / path, dpi=DPI)
    _pyplot().close(fig)
    return Figure(path.as_posix(), alt, caption)


def _db(audio: Any, top: float) -> Any:
    import numpy as np

    audio = np.asarray(audio, np.float64).reshape(-1)[:MAX_SAMPLES]
    if audio.size < N_FFT:
        audio = np.pad(audio, (0, N_FFT - audio.size))
    frames = np.lib.stride_tricks.sliding_window_view(audio, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1)) ** 2
    return 10 * np.log10(np.maximum(power, top * 10 ** (-DYNAMIC_RANGE_DB / 10))).T


def audio_case(folder: Path, manifest: dict[str, Any]) -> tuple[str, Any] | None:
    """(package, parity case) of the longest recorded ``audio`` output among the packages' first
    cases; None when no package outputs audio (an embedding model)."""
    import numpy as np

    from ..validation import parity

    best: tuple[int, str, Any] | None = None
    for name, rel in dict(manifest.get("parity", {})).items():
        cases = parity.load(folder / rel)
        case = next((c for c in cases if "audio" in c.outputs), None)
        if case is not None and (best is None or np.size(case.outputs["audio"]) > best[0]):
            best = (int(np.size(case.outputs["audio"])), name, case)
    return (best[1], best[2]) if best is not None else None


def spectrograms(folder: Path, manifest: dict[str, Any], sample_rate: int | None) -> Figure | None:
    import numpy as np

    from ..mil import MilProgram

    found = audio_case(folder, manifest)
    if found is None:
        return None
    name, case = found
    program = MilProgram.load(folder / manifest["packages"][name]["path"])
    got = np.asarray(program.run_fresh(case.inputs, case.function, case.states)["audio"], np.float64).reshape(-1)
    want = np.asarray(case.outputs["audio"], np.float64).reshape(-1)
    snr = 10 * np.log10(np.sum(want**2) / max(np.sum((got - want) ** 2), 1e-300))
    top = float(_db(want, 1e-30).max())  # the reference's loudest bin: the scale's 0 dB
    panels = [
        ("reference (torch, recorded)", _db(want, 10 ** (top / 10))),
        ("export (MIL interpreter)", _db(got, 10 ** (top / 10))),
        ("difference", _db(got - want, 10 ** (top / 10))),
    ]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 2.8), sharey=True, constrained_layout=True)
    rate = sample_rate or 1
    extent = (0, min(want.size, MAX_SAMPLES) / rate, 0, rate / 2 / (1000 if sample_rate else 1))
    for ax, (title, spec) in zip(axes, panels):
        image = ax.imshow(spec, origin="lower", aspect="auto", extent=extent, vmin=top - DYNAMIC_RANGE_DB, vmax=top)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("s" if sample_rate else "samples", fontsize=8)
    axes[0].set_ylabel("kHz" if sample_rate else "cycles/sample", fontsize=8)
    fig.colorbar(image, ax=axes, label="dB", shrink=0.9)
    fig.suptitle(f"{name}.{case.function}, parity case {case.index}: SNR {snr:.1f} dB", fontsize=9)
    return _saved(
        fig,
        folder,
        "spectrograms",
        "spectrograms of the reference's and the export's audio and their difference",
        f"`{name}` on its recorded parity case {case.index} ({case.function}): the reference's audio, the "
        f"published package's (run by zoo's MIL interpreter) and their difference on one scale; SNR {snr:.1f} dB.",
    )


def _gate(entry: ExportEntry, component: str) -> tuple[float, float, str] | None:
    """The package's output gate at the highest level it was judged in dB: (value, bound, level)."""
    rows = [
        v
        for v in entry.validation
        if v.get("component") == component and v.get("metric") == "snr_db_min" and v.get("status") != "skipped"
    ]
    if not rows:
        return None
    row = rows[-1]
    return float(row["value"]), float(row["threshold"]), str(row["level"])


WIDTH = {"w8": 8, "p6": 6, "p4": 4}


def compression(folder: Path, entry: ExportEntry) -> Figure | None:
    records = {c.name: dict(c.compression) for c in entry.components if c.compression}
    if not records:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.5 + 0.45 * len(records) + 1.2), constrained_layout=True)
    names = list(records)
    # each compressed weight's table width: a mixed plan's choice, else the mode's one width
    bits = {
        name: [int(b) for b in dict(r.get("bits", {})).values()]
        or [WIDTH.get(str(r.get("mode")), 0)] * int(r.get("compressed_weights", 0))
        for name, r in records.items()
    }
    widths = sorted({b for chosen in bits.values() for b in chosen})
    counts: dict[int, list[int]] = {w: [bits[n].count(w) for n in names] for w in widths}
    base = [0] * len(names)
    for w in widths:
        left.barh(names, counts[w], left=base, label=f"{w} bits")
        base = [a + b for a, b in zip(base, counts[w])]
    left.set_xlabel("compressed weights", fontsize=8)
    left.set_title("bits chosen per weight", fontsize=9)
    if widths:
        left.legend(fontsize=7)
    gates = [(_gate(entry, n), n) for n in names]
    shown = [(g, n) for g, n in gates if g is not None]
    for i, (gate, name) in enumerate(shown):
        value, bound, level = gate
        right.barh([name], [value], color="tab:green" if value >= bound else "tab:red")
        right.plot([bound, bound], [i - 0.4, i + 0.4], color="black")
        right.text(value, i, f" {value:.1f} dB ({level})", va="center", fontsize=7)
    right.set_xlabel("output SNR dB (bar) against its gate (line)", fontsize=8)
    right.set_title("outputs against their gates", fontsize=9)
    return _saved(
        fig,
        folder,
        "compression",
        "bits per weight and output SNR against the gate, per compressed package",
        "Per compressed package: how many weights got each table width, and the outputs' SNR against the "
        "gate they passed (the registry's records).",
    )


def evaluation(folder: Path, entry: ExportEntry) -> Figure | None:
    rows = [r for r in entry.eval if isinstance(r.get("per_prompt"), list) and r["per_prompt"]]
    if not rows:
        return None
    row = rows[-1]
    prompts = row["per_prompt"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.3 * len(prompts)), constrained_layout=True)
    ids = [str(p["id"]) for p in prompts]
    ys = range(len(ids))
    ax.barh([y + 0.2 for y in ys], [p.get("export_rate", 0) for p in prompts], height=0.4, label="export")
    ax.barh([y - 0.2 for y in ys], [p.get("reference_rate", 0) for p in prompts], height=0.4, label="reference")
    ax.set_yticks(list(ys), ids, fontsize=7)
    ax.set_xlabel("WER (CER for Japanese and Mandarin prompts)", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(f"zoo eval ({row.get('backend')}): WER per prompt", fontsize=9)
    return _saved(fig, folder, "eval", "WER per prompt", "`zoo eval`'s WER per prompt, export and reference.")


def draw(folder: Path, entry: ExportEntry, manifest: dict[str, Any], sample_rate: int | None) -> list[Figure]:
    """Every picture that applies to this export, written under ``folder/figures``."""
    (folder / FIGURES).mkdir(exist_ok=True)
    drawn = [spectrograms(folder, manifest, sample_rate), compression(folder, entry), evaluation(folder, entry)]
    figures = [f for f in drawn if f is not None]
    if not figures:
        (folder / FIGURES).rmdir()
    return figures
