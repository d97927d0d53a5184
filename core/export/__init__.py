"""The export pipeline: session, stages and their cache, publishing and the report.

May import: plugin, kit, util, validation, compression, coreml, mil, runtime, registry.
"""
