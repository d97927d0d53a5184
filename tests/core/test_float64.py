"""as_float64: the modules given are widened up front, the ``lazy`` ones only when called; the
reference level widens the port for its run and upstream's called modules for upstream's, and
falls back to widening everything at once when such a run cannot be trusted."""

from __future__ import annotations

import numpy as np
import torch

from zoo.core.kit.float64 import as_float64
from zoo.core.plugin.spec import ComponentSpec, ModelSpec, Variant
from zoo.core.plugin.traceable import TensorSpec, Traceable
from zoo.core.validation.levels import reference as reference_level


class Upstream(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.used = torch.nn.Linear(8, 8)
        self.unused = torch.nn.Linear(4096, 4096)  # another component's weights
        self.raw = torch.nn.Parameter(torch.randn(8, 8))  # read by a method, never through a forward


def test_a_lazy_module_is_widened_only_if_called_and_restored_bit_for_bit():
    up = Upstream()
    before = {n: p.detach().clone() for n, p in up.named_parameters()}
    with as_float64(lazy=(up,)):
        assert up.used.weight.dtype == torch.float32  # not called yet
        up.used(torch.ones(1, 8))
        assert up.used.weight.dtype == torch.float64
        assert up.unused.weight.dtype == torch.float32  # never called: never copied
    for name, param in up.named_parameters():
        assert param.dtype == torch.float32 and torch.equal(param, before[name]), name


def test_the_reference_level_falls_back_to_widening_every_module(monkeypatch):
    """Upstream reads a parameter outside any forward: the lazy float64 run raises (float64 input,
    float32 weight) and the eager run judges — float64_rel passes at summation-order size."""
    up = Upstream()

    class Port(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used = up.used

        def forward(self, x):
            return self.used(x) @ up.raw.T.to(x.dtype)  # the port pins the dtype, upstream does not

    def reference(x):
        t = torch.as_tensor(x)
        with torch.no_grad():
            return {"y": torch.nn.functional.linear(up.used(t), up.raw).numpy()}

    example = {"x": np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)}
    traceable = Traceable(Port(), [TensorSpec("x", (2, 8))], ["y"], [example], reference=reference)
    model = ModelSpec("m", "test", {"fp32": Variant("fp32", "fp32")}, "fp32", (ComponentSpec("c", "one linear"),))
    calls = []
    real = reference_level.as_float64

    def counted(*objects, lazy=(), extra=(), per_call=False):
        calls.append("lazy" if lazy else "eager")
        return real(*objects, lazy=lazy, extra=extra, per_call=per_call)

    monkeypatch.setattr(reference_level, "as_float64", counted)
    result = reference_level.check_component(model, model.variant("fp32"), "c", up, {"main": traceable})
    assert calls == ["eager", "lazy", "eager"]  # the port; upstream lazily (raised); both at once
    checks = {c.metric: c for c in result.checks}
    assert checks["float64_rel"].status == "passed" and checks["float64_rel"].value < 1e-12, checks


def test_per_call_widens_a_modules_own_weights_only_while_it_runs_and_keeps_buffers_to_the_end():
    class Counter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(8, 8)
            self.scale = torch.nn.Parameter(torch.full((8,), 1.0 / 3.0))
            self.register_buffer("total", torch.zeros(8))

        def forward(self, x):
            seen.append((self.scale.dtype, self.inner.weight.dtype))
            y = self.inner(x) * self.scale
            self.total.add_(y.sum(0))  # state a later call reads: must stay float64 between calls
            return y

    seen: list = []
    torch.manual_seed(0)
    m = Counter()
    weight = m.inner.weight.data_ptr()
    x = torch.randn(2, 8, dtype=torch.float64)
    with as_float64(m, per_call=True), torch.no_grad():
        assert m.inner.weight.dtype == m.scale.dtype == torch.float32 and m.total.dtype == torch.float64
        m(x)
        assert m.inner.weight.dtype == torch.float32  # narrowed again when the call returned
        assert m.total.dtype == torch.float64
        m(x)
        total = m.total.clone()
    assert seen == [(torch.float64, torch.float32)] * 2  # the child's weight: widened in its own call only
    assert m.inner.weight.data_ptr() == weight  # its own storage put back, not a copy
    want = 2 * (x @ m.inner.weight.double().T + m.inner.bias.double()).mul(m.scale.double()).sum(0)
    assert torch.allclose(total, want, rtol=1e-14, atol=0)  # computed in float64 throughout
    assert m.total.dtype == torch.float32 and torch.equal(m.total, total.float())
