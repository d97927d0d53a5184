"""vibevoice: Microsoft VibeVoice-Realtime-0.5B — work in progress, not registered as a plugin yet.

Done: the architecture's facts (config.py) and the language models laid out for the
Neural Engine (lm.py: zoo.core.ane layers, KV cache as CoreML state, chunked input),
checked against transformers' Qwen2Model in torch and, converted, through zoo's MIL
interpreter. Open: the reference loader (checkpoint names, voice presets), the
tts_lm step with the negative (CFG) path, the fused diffusion head, the streaming
acoustic decoder, constants, the run loop and the export hooks.
"""

__version__ = "0.0.1"
