"""The registry of exports (registry.toml), export directories and `zoo verify`.

May import: plugin, util, validation, mil, coreml.
"""
