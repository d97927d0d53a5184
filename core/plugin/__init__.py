"""The contract between zoo and a model plugin: the spec dataclasses, records, hook
specifications, the plugin skeleton and the host that loads plugins.

May import: util. Never torch, coremltools or numpy at import time.
"""
