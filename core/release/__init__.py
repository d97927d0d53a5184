"""Publishing: a registered export turned into a folder an app developer or a model hub can take
as it is (``zoo publish``), described by a versioned, schema-checked ``manifest.json``, and such a
folder verified on its own, with no registry (``zoo verify DIR``).

May import (pyproject's layer contract): export, registry, host, validation, coreml, kit, plugin, util.
"""
