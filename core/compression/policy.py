"""What an export does for a variant's compression, decided once: the export pipeline asks, never tests
``variant.compression`` itself.

* whether packages are compressed at all, and whether by ``mixed`` (per-weight widths measured on the
  parity examples, aimed at :class:`MixedTargets`);
* which stages the export runs for it (``compress:<c>``, ``compress:constants`` where the model declares
  compressed constants, then ``loop:uncompressed``/``loop:compressed``
  where the model declares a :class:`~zoo.core.plugin.spec.CompressedLoop`);
* the bound a compressed package is judged by at the package levels (from its :class:`CompressionRecord`),
  and the bound the compressed loop's audio may use (the audio component's own mil bound).

May import: plugin, validation (and the compression package's own modules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from ..plugin.spec import CompressedLoop, ModelSpec, Tolerance, Variant
from ..validation.checks import Check
from .planner import MixedTargets, cosine_snr_db
from .record import CompressionRecord

#: a package bound: the tolerance the package levels apply, and the sentence saying why
PackageBound = tuple[Tolerance, str]


@dataclass(frozen=True)
class CompressionPolicy:
    """The compression steps of one export of ``model`` at ``variant`` (``CompressionPolicy.of``)."""

    model: ModelSpec
    variant: Variant

    @classmethod
    def of(cls, model: ModelSpec, variant: Variant) -> CompressionPolicy:
        return cls(model, variant)

    @property
    def compresses(self) -> bool:
        """Whether the converted packages are compressed (the compressed ones are validated and shipped)."""
        return self.variant.compression != "none"

    @property
    def mixed(self) -> bool:
        return self.variant.compression == "mixed"

    @property
    def loop(self) -> CompressedLoop | None:
        """The whole-loop comparison against the uncompressed packages, when compressed and declared."""
        return self.model.compressed_loop if self.compresses else None

    def compress_stages(self, components: Iterable[str]) -> list[str]:
        """The stages compression adds after conversion: one per component."""
        return [f"compress:{c}" for c in components] if self.compresses else []

    @property
    def compresses_constants(self) -> bool:
        """Whether the constants the model declares (``ModelSpec.compressed_constants``) are stored as
        look-up tables: the ``compress:constants`` stage."""
        return self.compresses and bool(self.model.compressed_constants)

    def loop_stages(self) -> list[str]:
        """The stages compression adds after the package levels: the loop on both sets of packages."""
        return ["loop:uncompressed", "loop:compressed"] if self.loop is not None else []

    def chaotic(self, component: str) -> bool:
        """A component judged phase-blind by its own calibrated spectral bound (an SNR means nothing
        there): its compression is not measured per weight, and a weight under its floor still fails."""
        own = self.model.tolerance(component, self.variant.precision, "mil")
        return own.spectral_factor is not None or own.spectral_max is not None

    def package_bound(self, component: str, record: CompressionRecord) -> PackageBound | None:
        """The bound ``component``'s compressed package is judged by at the package levels; None when no
        weight was compressed (the component's own tolerance applies, as uncompressed)."""
        if not record.weight_snr_db:
            return None
        if self.chaotic(component):
            broken = record.broken()
            return (Tolerance(snr_db_min=float("inf")), broken) if broken else None
        bound, basis = record.bound()
        cosine = self.model.component(component).compressed_cosine
        if cosine is not None:
            basis += f"; cosine ≥ {cosine:g} declared by the model (what its mixed widths are planned for)"
        return Tolerance(snr_db_min=round(bound, 2), cosine_min=cosine), basis

    def mixed_targets(self, component: str, moved: float | None) -> MixedTargets:
        """What the ``mixed`` compression aims at for each output of ``component``: integer outputs by their
        margin to the rounding boundary; a chaotic component's audio no farther (spectral distance from the
        uncompressed package) than torch's own movement ``moved`` for a perturbation at the variant's
        precision (the reference stage's calibration)."""
        spec = self.model.component(component)
        precision = self.variant.precision
        integer = tuple(sorted(spec.integer_outputs.items()))
        if self.model.tolerance(component, precision, "mil").spectral_factor is None:
            if spec.compressed_cosine is not None:
                snr = cosine_snr_db(spec.compressed_cosine)
                basis = f"cosine ≥ {spec.compressed_cosine:g} to the uncompressed outputs: SNR {snr:.1f} dB"
                return MixedTargets(basis=basis, integer=integer, default_db=snr)
            return MixedTargets(integer=integer)
        if not moved:
            raise ValueError(
                f"{component}: no {precision} movement was measured for the mixed compression's spectral target"
            )
        return MixedTargets(
            (),
            -20 * math.log10(moved),
            f"spectral distance ≤ torch's own movement {moved:.3g} for a {precision} perturbation",
            integer,
        )

    def audio_bound(self, checks: Iterable[Check]) -> tuple[float, str] | None:
        """The mil bound (and basis) the loop's audio component was judged by, which the compressed loop's
        audio may also use (a smooth decoder that another seed moves less)."""
        loop = self.loop
        if loop is None:
            return None
        for c in checks:
            if c.level == "mil" and c.component == loop.audio_component and c.metric == "spectral_max":
                if c.threshold is not None:
                    return float(c.threshold), c.basis
        return None
