"""One module per `zoo` command; importing this package registers them all on ``common.app``."""

from . import evaluate, export, info, listing, new_plugin, publish, registry, rm, run, verify  # noqa: F401  (registration)
