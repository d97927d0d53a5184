"""Hosting plugins: discovering them (entry points, pluggy), the core's default hook
implementations (registered like any plugin), and ``ModelSession``, which calls one model's
hooks, each once, for every command that needs them (export, run, eval).

May import (pyproject's layer contract), the sub-packages below it:
compression, validation, runtime, mil, coreml, kit, plugin, util."""
