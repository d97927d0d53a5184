"""The command line (typer + rich), the plugin scaffold and its templates.

May import: every other sub-package of core (the top of pyproject's layer contract)."""
