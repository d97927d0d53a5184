"""Backends that execute an export's components: torch, zoo's MIL interpreter, CoreML.

May import (pyproject's layer contract): mil, coreml, kit, plugin, util."""
