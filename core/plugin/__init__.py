"""The contract between zoo and a model plugin: the spec dataclasses, records, hook
specifications, the plugin skeleton (its role protocols) and the leaf ``names``.

May import (pyproject's layer contract): util. Never torch, coremltools or numpy at import time."""
