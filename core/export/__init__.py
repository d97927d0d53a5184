"""The export pipeline: session, stages and their cache, publishing and the report.

May import (pyproject's layer contract), the sub-packages below it:
evaluation, run, registry, host, compression, validation, runtime, mil, coreml, kit, plugin, util."""
