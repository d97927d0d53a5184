"""The export's model session lets torch go once the packages are converted."""

from __future__ import annotations

from zoo.core.export.cache import StageCache
from zoo.core.host.session import ModelSession
from zoo.core.plugin.spec import WeightsSource
from zoo.core.registry.store import Registry


def test_the_reference_and_traceables_are_released_after_conversion_before_the_package_levels(
    tiny_site, monkeypatch, tmp_path
):
    monkeypatch.syspath_prepend(str(tiny_site))
    from zoo.core.export.pipeline import Exporter
    from zoo.core.host.plugins import PluginHost

    exporter = Exporter(
        PluginHost(),
        "tiny",
        None,
        WeightsSource.random(0),
        tmp_path / "out",
        Registry(tmp_path / "registry.toml"),
        StageCache(tmp_path / "cache"),
    )
    seen = []
    real = ModelSession.release

    def release(self):
        seen.append([s.stage for s in exporter.report.stages])
        real(self)
        assert self._reference is None and self._traceables is None

    monkeypatch.setattr(ModelSession, "release", release)
    report = exporter.run()
    assert report.ok and len(seen) == 1
    done = seen[0]
    assert any(s.startswith("convert:") for s in done) and not any(s.startswith("mil:") for s in done), done
    assert any(s.startswith("mil:") for s in (s.stage for s in report.stages))
