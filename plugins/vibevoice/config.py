"""VibeVoice-Realtime-0.5B facts (microsoft/VibeVoice ``vibevoice/modular/*streaming*``).

The language model is Qwen2.5-0.5B split in two: ``lm`` (``model.language_model``,
the lower 4 layers, final norm replaced by identity) encodes text only;
``tts_lm`` (``model.tts_language_model``, the upper 20 layers with their final
norm) reads the lm's hidden states for text and the acoustic connector's
embeddings for speech, plus a 2-entry type embedding (1 = text, 0 = speech).
"""

from __future__ import annotations

HUB_REPO = "microsoft/VibeVoice-Realtime-0.5B"

#: Qwen2.5-0.5B (the decoder_config of the streaming model)
DECODER: dict = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "num_hidden_layers": 24,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "hidden_act": "silu",
}
TTS_LAYERS = 20  # tts_backbone_num_hidden_layers; the lm gets the other 4

TEXT_WINDOW = 5  # TTS_TEXT_WINDOW_SIZE: text tokens per tts_lm window
SPEECH_WINDOW = 6  # TTS_SPEECH_WINDOW_SIZE: speech latents generated after each text window
LATENT = 64  # acoustic VAE dim
SAMPLES_PER_LATENT = 3200  # decoder upsampling 8*5*5*4*2*2 at 24 kHz: 7.5 latents per second


def small_decoder() -> dict:
    """A reduced Qwen2 for tests: same head geometry (GQA 7:1 becomes 2:1), fewer and narrower layers."""
    return {
        **DECODER,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "num_hidden_layers": 5,
        "vocab_size": 1000,
        "max_position_embeddings": 4096,
    }


def qwen2_config(decoder: dict, layers: int) -> object:
    """A transformers Qwen2Config with ``layers`` layers (eager attention: exact softmax)."""
    from transformers import Qwen2Config

    config = Qwen2Config(**{**decoder, "num_hidden_layers": layers})
    config._attn_implementation = "eager"
    return config
