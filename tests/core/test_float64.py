"""as_float64: the modules given are widened up front, the ``lazy`` ones only when called, and with
``per_call`` each module's weights only while it runs; the reference level runs the port, then
upstream, that way, and falls back to widening everything at once when such a run cannot be trusted."""

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


def _check(up, port, reference, monkeypatch):
    example = {"x": np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)}
    traceable = Traceable(port, [TensorSpec("x", (2, 8))], ["y"], [example], reference=reference)
    model = ModelSpec("m", "test", {"fp32": Variant("fp32", "fp32")}, "fp32", (ComponentSpec("c", "one linear"),))
    calls = []
    real = reference_level.as_float64

    def counted(*objects, lazy=(), per_call=False):
        calls.append("lazy" if lazy else "eager")
        return real(*objects, lazy=lazy, per_call=per_call)

    monkeypatch.setattr(reference_level, "as_float64", counted)
    result = reference_level.check_component(model, model.variant("fp32"), "c", up, {"main": traceable})
    return calls, {c.metric: c for c in result.checks}


def test_a_weight_read_outside_its_modules_forward_is_widened_by_the_op_reading_it(monkeypatch):
    """Upstream reads a parameter outside any forward (pocket_tts: F.linear on a projection weight):
    the per-call run gives that op a float64 copy, so no eager run is needed."""
    up = Upstream()

    class Port(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used = up.used

        def forward(self, x):
            return self.used(x) @ up.raw.T.to(x.dtype)  # the port pins the dtype, upstream does not

    def reference(x):
        with torch.no_grad():
            return {"y": torch.nn.functional.linear(up.used(torch.as_tensor(x)), up.raw).numpy()}

    calls, checks = _check(up, Port(), reference, monkeypatch)
    assert calls == ["eager", "lazy"]  # the port, then upstream: no second run
    assert checks["float64_rel"].status == "passed" and checks["float64_rel"].value < 1e-12, checks
    assert up.raw.dtype == torch.float32


def test_the_reference_level_falls_back_to_widening_every_module(monkeypatch):
    """Upstream keeps a running total in a buffer a method (not a forward) writes: in the lazy run
    that buffer stays float32 and rounds, float64_rel fails, and the eager run (everything widened
    at once) judges — passing at summation-order size."""
    up = Upstream()
    up.register_buffer("total", torch.zeros(2, 8))

    class Port(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used = up.used

        def forward(self, x):
            return self.used(x) / 3.0

    def reference(x):
        with torch.no_grad():
            up.total.zero_()
            up.total.add_(up.used(torch.as_tensor(x)) / 3.0)  # written outside any forward of its module
            return {"y": up.total.clone().numpy()}

    calls, checks = _check(up, Port(), reference, monkeypatch)
    assert calls == ["eager", "lazy", "eager"]  # the port; upstream lazily (rounded); both at once
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


def test_a_large_float64_conv1d_runs_in_slabs_with_the_same_values(monkeypatch):
    """Under as_float64 a 1-d convolution whose unfolded columns would pass SLAB_BYTES runs a slab of
    output positions at a time (strides, dilations, padding, groups, a batch of two, a ragged
    last slab): the values of the whole convolution; a small one, or padding given as a string,
    runs whole."""
    import torch.nn.functional as F

    from zoo.core.kit import float64

    calls: list[int] = []
    real = torch.conv1d

    def counting(*args, **kwargs):
        calls.append(args[0].shape[-1])
        return real(*args, **kwargs)

    torch.manual_seed(3)
    cases = [
        (torch.nn.Conv1d(6, 5, 3), {}),
        (torch.nn.Conv1d(6, 4, 5, stride=2, padding=3, dilation=2), {}),
        (torch.nn.Conv1d(6, 6, 4, stride=3, groups=3, bias=False), {}),
        (torch.nn.Conv1d(6, 5, 3, padding="same"), {"whole": True}),
    ]
    x = torch.randn(2, 6, 301, dtype=torch.float64)  # inputs come widened (inputs_float64)
    monkeypatch.setattr(float64, "SLAB_BYTES", 6 * 5 * 8 * 2 * 7)  # a few dozen output positions a slab
    for conv, how in cases:
        want = F.conv1d(
            x, conv.weight.double(), None if conv.bias is None else conv.bias.double(),
            conv.stride, conv.padding, conv.dilation, conv.groups,
        ).detach()  # fmt: skip
        calls.clear()
        monkeypatch.setattr(torch, "conv1d", counting)
        with as_float64(conv), torch.no_grad():
            got = conv(x)
        monkeypatch.setattr(torch, "conv1d", real)
        assert got.dtype == torch.float64 and got.shape == want.shape
        assert torch.allclose(got, want, rtol=1e-14, atol=1e-14 * float(want.abs().max())), conv
        assert (not calls) if how.get("whole") else (len(calls) > 3), (conv, calls)
