"""The registry of exports (registry.toml), export directories and `zoo verify`.

May import (pyproject's layer contract), the sub-packages below it:
host, compression, validation, runtime, mil, coreml, kit, plugin, util."""
