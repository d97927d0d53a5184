"""The command line (typer + rich), the plugin scaffold and its templates.

May import: everything in core.
"""
