"""Post-training weight compression of saved packages and its gates.

May import: plugin, util, mil, coreml, validation.
"""
