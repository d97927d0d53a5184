"""numpy implementations of MIL operations, one module per section of the op set.

Each kernel receives the op's inputs by name — tensors as numpy arrays (floats
already widened to float32 by the interpreter), constant parameters as numpy
scalars/arrays or Python strings — and returns one array or a tuple of arrays.
Parameter semantics follow the MIL op definitions of coremltools
(``coremltools/converters/mil/mil/ops/defs``); the interpreter rounds every
result to the dtype the program declares.

Sections: ``elementwise`` (arithmetic, comparisons, activations), ``reduction`` (reductions and
normalisations), ``linalg`` (matmul, attention, convolution), ``shape`` (re-shaping, slicing,
gather/scatter), ``spatial`` (resizing, space/depth moves), ``recurrent`` (gru/lstm/rnn) and
``constexpr`` (the ops that hold compressed weights). Importing this package registers them all
into ``KERNELS``; a new kernel is a function decorated with ``@kernel("op_type")`` in its section.
May import: numpy only.
"""

from . import constexpr, elementwise, linalg, recurrent, reduction, shape, spatial  # noqa: F401  (registration)
from .base import KERNELS, kernel

__all__ = ["KERNELS", "kernel"]
