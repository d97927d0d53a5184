"""Post-training weight compression of saved packages and its gates.

May import (pyproject's layer contract), the sub-packages below it:
validation, runtime, mil, coreml, kit, plugin, util."""
