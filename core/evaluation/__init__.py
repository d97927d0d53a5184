"""Quality you can hear: ASR-scored evaluation (prompts, normalisation, WER/CER, QoI).

May import: plugin, kit, util, validation, runtime, run, registry, export.
"""
