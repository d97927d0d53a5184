"""Errors the contract names: a bad command-line value, a backend that cannot run here."""


class UsageError(ValueError):
    """A bad command-line value (``zoo`` exits 2, before any model is loaded)."""


class BackendUnavailable(RuntimeError):
    """A backend that cannot run here, or an export it cannot load (the message names which)."""
