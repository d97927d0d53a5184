"""`zoo run`: speaking text through an export, streaming audio and timings.

May import: plugin, kit, util, runtime, registry, export, evaluation.
"""
