"""What a plugin declares: its models (``ModelSpec``), their variants, checkpoints and components, the
tolerances they are judged by, where weights come from, and how a compressed variant is compared.

Everything here is plain data (dataclasses) and imports neither torch nor coremltools, so that
`zoo --help` and `zoo list` stay fast. What the hooks return lives in ``traceable``; `zoo run`'s
side of the contract in ``run``; the errors in ``errors``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    pass

from .names import (
    COMPRESSION_SUMMARIES,
    COMPRESSION_TARGETS,
    COMPRESSIONS,
    INPUTS,
    LEVELS,
    OUTPUTS,
    PRECISIONS,
    TARGETS,
)  # noqa: E402,F401  (re-exported)
from .run import RunSetting

#: unit roundoff of each precision a comparison can be made at: the size of the perturbation used to
#: measure a component's own sensitivity, and the floor of a bound calibrated on upstream's rounding
UNIT_ROUNDOFF = {"float64": 2.0**-53, "fp32": 2.0**-24, "fp16": 2.0**-11}


@dataclass(frozen=True)
class Tolerance:
    """Thresholds one comparison must meet; ``None`` means "not checked".

    Fixed bounds, all relative to the output's own scale except ``max_abs``
    (kept for plugins that need it; the built-in ones do not use it):

    * ``rel``: largest absolute difference divided by the largest absolute
      value of the expected tensor.
    * ``cosine_min``: cosine similarity of the flattened tensors.
    * ``spectral_max``: for audio, the relative error of the magnitude
      spectrograms (phase-blind: for outputs that are chaotic sample by sample).
    * ``max_abs``: largest absolute difference.

    Bounds measured at export time, on the same inputs (see ``calibration.py``):

    * ``float64_rel``: at the ``reference`` level, the port and upstream both run
      in float64; they may differ only by summation order.
    * ``rounding_factor``: ``rel`` ≤ factor × upstream's own float32-vs-float64
      error (at least the fp32 unit roundoff): the port may not be much less
      precise than upstream itself.
    * ``storage``: the precision the port keeps state in by design (``"fp16"``:
      KV caches in CoreML states); a ``rounding_factor`` bound is then at least
      factor × the difference that storage makes to the port's own outputs
      (the same module with float32 states), measured at export time.
    * ``spectral_factor``: for chaotic audio, ``spectral`` ≤ factor × how far
      the torch component itself moves for an input perturbation of the
      compared precision's unit roundoff. With it, the float64 check compares
      spectra too (against ``float64_rel``).
    """

    max_abs: float | None = None
    rel: float | None = None
    cosine_min: float | None = None
    spectral_max: float | None = None
    float64_rel: float | None = None
    rounding_factor: float | None = None
    spectral_factor: float | None = None
    storage: str | None = None
    #: compressed packages: signal-to-noise ratio (dB) of the outputs against the reference's
    #: (10·log10 Σ expected² / Σ difference²), at least this
    snr_db_min: float | None = None

    def checks(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


#: tolerances used when neither the component nor the model names one (keys as ComponentSpec's).
#: reference: float64 exactness (measured 1e-16 to 4e-8 across the three plugins' components, the
#: larger ones where upstream keeps float32 constants) and fp32 no worse than 16x upstream's own
#: rounding (measured 0.65x-0.9x). fp32 packages: the same factor (the interpreter and CoreML compute
#: in fp32 in another order). fp16: cosine 0.999 (measured >= 0.99999 on every fp16 component).
DEFAULT_TOLERANCES: Mapping[str, Tolerance] = MappingProxyType(
    {
        "reference": Tolerance(float64_rel=1e-9, rounding_factor=16),
        "fp32": Tolerance(rounding_factor=16),
        "fp16": Tolerance(cosine_min=0.999),
    }
)


@dataclass(frozen=True)
class Variant:
    """One way of exporting a model: precision, deployment target, shapes."""

    name: str
    precision: str = "fp16"
    target: str = "iOS17"
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    #: weight compression applied to the converted packages (core/compression/compress.py: none, w8, p6, p4, mixed)
    compression: str = "none"
    #: a compressed variant: the name of the variant it compresses
    base: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"variant {self.name!r}: precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.target not in TARGETS:
            raise ValueError(f"variant {self.name!r}: target must be one of {TARGETS}, not {self.target!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                f"variant {self.name!r}: compression must be one of {COMPRESSIONS}, not {self.compression!r}"
            )

    def as_record(self) -> dict[str, Any]:
        record = {
            "name": self.name,
            "precision": self.precision,
            "target": self.target,
            "options": dict(self.options),
        }
        if self.compression != "none":  # uncompressed variants keep the record (and stage keys) they had
            record["compression"] = self.compression
        return record

    def for_checkpoint(self, name: str) -> "Variant":
        """This variant of the checkpoint ``name`` (kept in ``options["checkpoint"]``, so that stage
        keys, the registry record and the plugin's options all carry it)."""
        return dataclasses.replace(self, options={**self.options, "checkpoint": name})

    @property
    def checkpoint(self) -> str:
        """The checkpoint this variant is of ("" for a model without checkpoints)."""
        return str(self.options.get("checkpoint", ""))

    def compressed(self, mode: str) -> "Variant":
        """This variant with its weights compressed (``<name>-<mode>``), at the target the mode needs."""
        generation = {"iOS16": 0, "macOS13": 0, "iOS17": 1, "macOS14": 1, "iOS18": 2, "macOS15": 2}
        needed = generation[COMPRESSION_TARGETS[mode]]
        target = self.target
        if generation[target] < needed:
            target = [t for t, g in generation.items() if g == needed and t[:3] == target[:3]][0]
        base = self.description.removeprefix("default: ")
        return Variant(
            f"{self.name}-{mode}",
            self.precision,
            target,
            self.options,
            f"{base}; weights {COMPRESSION_SUMMARIES[mode]}".lstrip("; "),
            mode,
            self.name,
        )

    def uncompressed(self) -> "Variant":
        """What the hooks before compression see (reference, traceables, constants, convert): the
        variant this one compresses, at this one's target; an uncompressed variant itself."""
        if self.compression == "none":
            return self
        return Variant(self.base or self.name, self.precision, self.target, self.options, "", "none")


def with_compressed(
    variants: Mapping[str, Variant], bases: tuple[str, ...], modes: tuple[str, ...] = ("w8", "p6", "p4", "mixed")
) -> dict[str, Variant]:
    """``variants`` plus ``<base>-<mode>`` for each base and compression mode (``Variant.compressed``)."""
    out = dict(variants)
    for base in bases:
        for mode in modes:
            v = variants[base].compressed(mode)
            out[v.name] = v
    return out


#: what every model's reduced-size test variants are
SMALL_VARIANT = "reduced-size architecture for tests (--random-weights only)"


def standard_variants(
    full: Mapping[str, Any],
    small: Mapping[str, Any],
    *,
    fp16: str,
    fp32: str = "fp32 everywhere",
    target: str = "iOS17",
    fp16_options: Mapping[str, Any] | None = None,
    extra: Mapping[str, Variant] | None = None,
    compressed: tuple[str, ...] = ("fp16", "small-fp16"),
) -> dict[str, Variant]:
    """The variants every built-in model has: ``fp16`` (describe it as the default) and ``fp32`` of the
    ``full`` options, their reduced-size twins ``small-fp16`` and ``small-fp32`` of the ``small`` options
    (tests, ``--random-weights``), then ``extra``, then the compressed variants of ``compressed``
    (:func:`with_compressed`). ``fp16_options`` are merged into the options of both fp16 variants."""

    def options(base: Mapping[str, Any], precision: str) -> dict[str, Any]:
        return {**base, **(fp16_options or {})} if precision == "fp16" else dict(base)

    variants = {
        "fp16": Variant("fp16", "fp16", target, options(full, "fp16"), fp16),
        "fp32": Variant("fp32", "fp32", target, options(full, "fp32"), fp32),
        "small-fp32": Variant("small-fp32", "fp32", target, options(small, "fp32"), SMALL_VARIANT),
        "small-fp16": Variant("small-fp16", "fp16", target, options(small, "fp16"), SMALL_VARIANT),
        **(extra or {}),
    }
    return with_compressed(variants, bases=compressed)


@dataclass(frozen=True)
class ComponentSpec:
    """A CoreML package a model export produces.

    ``functions`` lists the package's functions; a single ``"main"`` is a plain
    package, several make a multifunction package whose functions share weights.
    ``tolerances`` override the model's for this component. Keys are a
    precision at one validation level (``"fp16@mil"``), a level (``"reference"``:
    any precision) or a precision (``"fp16"``), looked up in that order.
    """

    name: str
    description: str = ""
    functions: tuple[str, ...] = ("main",)
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    #: outputs the run loop turns into integers (durations): name -> rounding (``round``,
    #: ``round_min1``); compared exactly after that rounding, at every level
    integer_outputs: Mapping[str, str] = field(default_factory=dict)
    #: weights kept uncompressed in compressed variants: regular expressions on the weight
    #: constants' names (coremltools derives them from the torch parameter paths), and why
    uncompressed: tuple[str, ...] = ()
    uncompressed_reason: str = ""
    #: compressed variants: the outputs' cosine similarity to the uncompressed package's must be at
    #: least this (a gate beside the measured SNR bound), and the ``mixed`` compression plans its
    #: widths for the SNR that cosine implies (``compression.planner.cosine_snr_db``). For outputs
    #: judged by direction (an embedding compared by cosine); None: the SNR bound and 20 dB target
    compressed_cosine: float | None = None


@dataclass(frozen=True)
class Checkpoint:
    """One set of released weights a model exports from (a language, a size): ``zoo export
    MODEL --checkpoint NAME``. Variants (precision, compression) apply to every checkpoint."""

    name: str
    description: str = ""
    #: where the released weights live (``hub_repo`` at the pinned ``revision``)
    hub_repo: str | None = None
    revision: str | None = None
    #: upstream's own reference to the weights (e.g. ``hf://owner/repo/path@revision``), recorded
    source: str = ""
    #: the architecture family (checkpoints of one family share the plugin's port)
    family: str = ""
    #: why this checkpoint cannot be exported ("" when it can), said before anything loads
    unsupported: str = ""

    def as_record(self) -> dict[str, Any]:
        record = {"name": self.name, "source": self.source, "family": self.family}
        return {k: v for k, v in record.items() if v}


#: deployment targets that load no multifunction package (those need iOS18/macOS15)
PRE_MULTIFUNCTION = ("iOS16", "iOS17", "macOS13", "macOS14")


@dataclass(frozen=True)
class ModelSpec:
    """What a plugin declares through ``zoo_register_models``."""

    name: str
    summary: str
    variants: Mapping[str, Variant]
    default_variant: str
    components: tuple[ComponentSpec, ...]
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    hub_repo: str | None = None
    revision: str | None = None
    sample_rate: int = 24000
    #: the validation level an export must pass to be registered as valid
    required_level: str = "reference"
    #: ``zoo run --set`` options of the run loop (checked before anything loads)
    run_settings: tuple[RunSetting, ...] = ()
    #: whether ``--voice`` may name a WAV file to clone a voice from
    clones_voices: bool = False
    #: what the run loop takes (``names.INPUTS``): ``text`` (zoo run MODEL TEXT), or ``voice`` (zoo run
    #: MODEL --voice FILE.wav: a recording, no text; its --voice is a file whatever ``clones_voices`` says)
    input: str = "text"
    #: what the run loop makes (``names.OUTPUTS``): ``audio`` (``RunResult.audio``, written as a WAV),
    #: ``embedding`` or ``tokens`` (``RunResult.values``, written as .npy or .json)
    output: str = "audio"
    #: compressed variants: their whole loop against the uncompressed packages' (None: not compared)
    compressed_loop: "CompressedLoop | None" = None
    #: tensors of its constant files a compressed variant stores as look-up tables ({constant name or
    #: pattern such as ``voice_*``: tensor names}; ``compression.constants``); the run loop reads them
    #: through ``kit.constants.load_constants``, and ``compressed_loop`` (required) judges them
    compressed_constants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: released checkpoints (``--checkpoint``); empty: the model has one set of weights
    checkpoints: Mapping[str, Checkpoint] = field(default_factory=dict)
    default_checkpoint: str = ""
    #: the languages the run loop speaks (ISO 639-1 codes, as ``zoo eval --lang`` takes them), each
    #: with the ``--set`` options that make it speak that language (``{}``: none needed)
    languages: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: {"en": {}})
    #: the upstream weights' license as a model card names it (``apache-2.0``, ``mit``, ...); "" when the
    #: plugin does not state it (a published card then says ``other``)
    license: str = ""
    #: MB an export of a variant needs at its peak (variant name -> MB), when the plugin knows it: a
    #: matrix's Ray tasks ask for it (else the last export's recorded peak)
    export_memory_mb: Mapping[str, int] = field(default_factory=dict)
    #: filled in by the core: the name of the plugin that registered the model
    plugin: str = ""

    def __post_init__(self) -> None:
        if self.default_variant not in self.variants:
            raise ValueError(
                f"model {self.name!r}: default variant {self.default_variant!r} is not among {sorted(self.variants)}"
            )
        if self.required_level not in LEVELS:
            raise ValueError(f"model {self.name!r}: required_level must be one of {LEVELS}")
        if self.input not in INPUTS:
            raise ValueError(f"model {self.name!r}: input must be one of {INPUTS}, not {self.input!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"model {self.name!r}: output must be one of {OUTPUTS}, not {self.output!r}")
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"model {self.name!r}: duplicate component names {names}")
        if self.checkpoints and self.default_checkpoint not in self.checkpoints:
            raise ValueError(
                f"model {self.name!r}: default checkpoint {self.default_checkpoint!r} is not among "
                f"{sorted(self.checkpoints)}"
            )
        if any(name != c.name for name, c in self.checkpoints.items()):
            raise ValueError(f"model {self.name!r}: checkpoints must be keyed by their names")
        if self.compressed_constants and self.compressed_loop is None:
            raise ValueError(
                f"model {self.name!r}: compressed_constants need a compressed_loop (the loop on compressed packages "
                "and constants is what judges them)"
            )
        if any(
            isinstance(t, str) or not all(isinstance(n, str) for n in t) for t in self.compressed_constants.values()
        ):
            raise ValueError(f"model {self.name!r}: compressed_constants map names to tuples of tensor names")
        several = [c.name for c in self.components if len(c.functions) > 1]
        early = sorted(v.name for v in self.variants.values() if v.target in PRE_MULTIFUNCTION)
        if several and early:  # a multifunction package loads on iOS18/macOS15 only
            raise ValueError(
                f"model {self.name!r}: component {several[0]!r} is one package of several functions (iOS18/macOS15) "
                f"but variant {early[0]!r} declares {self.variants[early[0]].target}"
            )

    def checkpoint(self, name: str | None) -> Checkpoint:
        """The named checkpoint (``None``: the default); KeyError if unknown or the model has none."""
        name = name or self.default_checkpoint
        if name not in self.checkpoints:
            raise KeyError(name)
        return self.checkpoints[name]

    def component(self, name: str) -> ComponentSpec:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(name)

    def tolerance(self, component: str, precision: str, level: str = "reference") -> Tolerance:
        """The component's tolerance at ``level``, else the model's, else the default (see ComponentSpec)."""
        comp = self.component(component)
        for table in (comp.tolerances, self.tolerances, DEFAULT_TOLERANCES):
            for key in (f"{precision}@{level}", level, precision):
                if key in table:
                    return table[key]
        raise KeyError(f"no tolerance for {component} at {precision}@{level}")

    def variant(self, name: str | None) -> Variant:
        name = name or self.default_variant
        if name not in self.variants:
            raise KeyError(name)
        return self.variants[name]


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights come from.

    ``kind`` is ``"hub"`` (``repo`` at pinned ``revision``), ``"local"``
    (``path``: a directory laid out like the hub repository, or a file) or
    ``"random"`` (the real architecture with weights drawn from ``seed``).
    """

    kind: str
    repo: str | None = None
    revision: str | None = None
    path: str | None = None
    seed: int | None = None

    @classmethod
    def random(cls, seed: int = 0) -> "WeightsSource":
        return cls(kind="random", seed=seed)

    @classmethod
    def local(cls, path: str | Path) -> "WeightsSource":
        return cls(kind="local", path=str(Path(path).resolve()))

    @classmethod
    def hub(cls, repo: str, revision: str) -> "WeightsSource":
        return cls(kind="hub", repo=repo, revision=revision)

    def describe(self) -> str:
        if self.kind == "random":
            return f"random(seed={self.seed})"
        if self.kind == "local":
            return f"local:{self.path}"
        return f"hub:{self.repo}@{self.revision}"


@dataclass(frozen=True)
class CompressedLoop:
    """How an export of a compressed variant speaks against the same export uncompressed: the run
    loop on both sets of packages (zoo's MIL interpreter, same text, voice, seed and settings),
    judged at the ``mil`` level as component ``loop:compressed``.

    ``frames_max_delta`` bounds the difference in ``RunResult.frames`` (where the loop ended: EOS,
    durations). The audio's spectral distance (over the common length) is bounded relative to what
    the loop itself does with other noise: ``spectral_factor`` × the distance between the
    uncompressed packages' audio with seed 0 and with seed 1 — scale-free, so it holds for any
    weights (a model that speaks differently per seed tolerates more). ``basis`` names the
    measurements the bounds stand on.
    """

    text: str
    frames_max_delta: int
    spectral_factor: float
    basis: str
    settings: Mapping[str, str] = field(default_factory=dict)
    #: the loop's results carry ``RunResult.segments`` (kokoro: every token's frames): the frames
    #: are judged per segment by the integer outputs' tempo rule (``validation.metrics.INTEGER_TEMPO``:
    #: Σ|Δ| no more than a ±10% tempo change of the uncompressed segments makes) instead of
    #: ``frames_max_delta``, and the audio is compared aligned segment by segment, so a one-frame
    #: shift costs a one-frame shift
    aligned: bool = False
    #: the component that makes the audio from aligned features (kokoro: ``decoder``): the loop's
    #: audio may also move as far as that component's own mil bound allows (its calibrated
    #: movement at the variant's precision), where another seed moves it less (a smooth decoder)
    audio_component: str | None = None
