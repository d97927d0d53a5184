"""zoo's built-in model plugins.

Each sub-package is one plugin, registered through the ``zoo.plugins``
entry-point group in zoo's own pyproject.toml, exactly like a third-party
plugin would be.
"""
