"""`zoo run`: speaking text through an export, streaming audio and timings.

May import (pyproject's layer contract), the sub-packages below it:
registry, host, compression, validation, runtime, mil, coreml, kit, plugin, util."""
