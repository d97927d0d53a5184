"""Shared pieces of the pocket_tts tests: the small architecture with seeded random weights.

Test modules import the fixtures from here (``from pocket import small_ref, ...``).
"""

from __future__ import annotations

import pytest

pytest.importorskip("pocket_tts", reason="pocket-tts is not installed (pip install zoo-tts[pocket_tts])")

from zoo.core import RunOptions, WeightsSource  # noqa: E402
from zoo.core.host.plugins import PluginHost  # noqa: E402
from zoo.core.host.session import ModelSession  # noqa: E402
from zoo.plugins.pocket_tts import loop  # noqa: E402
from zoo.plugins.pocket_tts.options import (
    RUN_SETTINGS,
    SMALL,  # noqa: E402,F401  (the small architecture's options)
)


@pytest.fixture(scope="session")
def small_session():
    return ModelSession(PluginHost(), "pocket_tts", "small-fp32", WeightsSource.random(0))


@pytest.fixture(scope="session")
def small_ref(small_session):
    return small_session.reference().model


@pytest.fixture(scope="session")
def small_components(small_session):
    """{component: {function: Traceable}} (a single-function component's is "main")."""
    return small_session.traceables()


@pytest.fixture(scope="session")
def small_runtime(small_session, tmp_path_factory):
    return small_session.torch_runtime(tmp_path_factory.mktemp("pocket-constants"))


def speak(runtime, text, seed=0, **settings):
    runtime.calls.clear()
    return loop.run(
        runtime,
        text,
        RunOptions(seed=seed, settings={k: str(v) for k, v in settings.items()}).resolved(RUN_SETTINGS, "pocket_tts"),
    )
