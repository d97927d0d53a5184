"""zoo's MIL interpreter: run saved .mlpackage files on any OS with numpy::

from zoo.core.mil import load
program = load("model.mlpackage")
outputs = program.run({"x": x})                      # stateless
state = program.make_state("step")                   # stateful: zeros, as CoreML
outputs = program.run(inputs, function="step", state=state)
"""

from . import compression  # noqa: E402,F401  (registers the constexpr and quantization ops' kernels)
from .kernels import KERNELS
from .program import MilError, MilFunction, MilProgram, UnsupportedOp, load

__all__ = ["KERNELS", "MilError", "MilFunction", "MilProgram", "UnsupportedOp", "load"]
