"""Validation levels, one module each (``reference`` here; ``mil`` and ``coreml`` execute saved
packages through :func:`zoo.core.validation.execute_parity`)."""
