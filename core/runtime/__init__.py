"""Backends that execute an export's components: torch, zoo's MIL interpreter, CoreML.

May import: plugin, util, mil, coreml.
"""
