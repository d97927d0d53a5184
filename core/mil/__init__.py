"""zoo's MIL interpreter: run saved .mlpackage files on any OS with numpy::

from zoo.core.mil import load
program = load("model.mlpackage")
outputs = program.run({"x": x})                      # stateless
state = program.make_state("step")                   # stateful: zeros, as CoreML
outputs = program.run(inputs, function="step", state=state)

May import (pyproject's layer contract): coreml, kit, plugin, util.
"""

from .kernels import KERNELS
from .program import MilError, MilFunction, MilProgram, UnsupportedOp, load

__all__ = ["KERNELS", "MilError", "MilFunction", "MilProgram", "UnsupportedOp", "load"]
