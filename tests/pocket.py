"""Shared pieces of the pocket_tts tests: the small architecture with seeded random weights.

Test modules import the fixtures from here (``from pocket import small_ref, ...``).
"""

from __future__ import annotations

import pytest

pytest.importorskip("pocket_tts", reason="pocket-tts is not installed (pip install zoo-tts[pocket_tts])")

from zoo.core import RunOptions, WeightsSource  # noqa: E402
from zoo.core.pipeline import normalise_functions  # noqa: E402
from zoo.core.runtime import TorchRuntime  # noqa: E402
from zoo.plugins.pocket_tts import constants, loop, reference, traceables, zoo_register_models  # noqa: E402

SMALL = dict(zoo_register_models()[0].variants["small-fp32"].options)


@pytest.fixture(scope="session")
def small_ref():
    return reference.load(WeightsSource.random(0), size="small", voice_seconds=2.0).model


@pytest.fixture(scope="session")
def small_components(small_ref):
    return traceables.build(small_ref, SMALL, "fp32")


@pytest.fixture(scope="session")
def small_runtime(small_ref, small_components, tmp_path_factory):
    out = tmp_path_factory.mktemp("pocket-constants")
    files = constants.export(small_ref, SMALL, "fp32", out)
    return TorchRuntime({k: normalise_functions(v) for k, v in small_components.items()}, files)


def speak(runtime, text, seed=0, **settings):
    runtime.calls.clear()
    return loop.run(runtime, text, RunOptions(seed=seed, settings={k: str(v) for k, v in settings.items()}))
