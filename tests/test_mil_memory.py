"""The MIL interpreter's memory: an intermediate is freed after its last reader ran.

Measured with tracemalloc (numpy reports its buffers to it), so the figure is the interpreter's
own allocations, independent of the machine: a chain of 40 element-wise ops on a 1 MB tensor.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from zoo.core.mil import MilProgram

CHAIN = 20  # mul then add, 20 times: 40 intermediates of one tensor's size each


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> MilProgram:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    def fn(x):
        for i in range(CHAIN):
            x = mb.mul(x=x, y=np.float32(1.0001), name=f"m{i}")
            x = mb.add(x=x, y=np.float32(0.5), name=f"a{i}")
        return x

    program = mb.program(input_specs=[mb.TensorSpec(shape=(512, 512))], opset_version=ct.target.iOS17)(fn)
    model = ct.convert(program, source="milinternal", convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                       compute_precision=ct.precision.FLOAT32, pass_pipeline=ct.PassPipeline.EMPTY)
    path = tmp_path_factory.mktemp("chain") / "chain.mlpackage"
    model.save(str(path))
    return MilProgram.load(path)


def _peak(program: MilProgram, x: np.ndarray) -> tuple[float, np.ndarray]:
    """(peak traced bytes during one run / the tensor's bytes, the output)."""
    tracemalloc.start()
    try:
        out = program.run({"x": x})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / x.nbytes, next(iter(out.values()))


def test_intermediates_are_freed_after_their_last_use(chain):
    x = np.ones((512, 512), np.float32)
    steps = chain.function().steps
    assert len(steps) == 2 * CHAIN
    # each step frees its input (the previous step's output), except the last, whose output is returned
    assert all(step.release == (steps[i - 1].outputs[0][0],) for i, step in enumerate(steps) if i)
    ratio, out = _peak(chain, x)
    expected = np.ones_like(x)
    for _ in range(CHAIN):
        expected = expected * np.float32(1.0001) + np.float32(0.5)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # measured: 3.0 (the value being read, the one being made, the returned copy); keeping every
    # intermediate would be about 2 * CHAIN = 40
    assert ratio < 4, f"peak {ratio:.1f}x the tensor over a chain of {2 * CHAIN} ops"

    # the mutation this test exists for: nothing released -> the peak grows with the chain
    saved = [step.release for step in steps]
    try:
        for step in steps:
            step.release = ()
        kept, _ = _peak(chain, x)
    finally:
        for step, release in zip(steps, saved):
            step.release = release
    assert kept > 2 * CHAIN - 2, f"without releases the peak was only {kept:.1f}x: the measurement cannot see a leak"
