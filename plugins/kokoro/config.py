"""Kokoro-82M (hexgrad/Kokoro-82M, kokoro 0.9.4) hyper-parameters and phoneme vocabulary.

These are the values of the hub repository's ``config.json``; they let
``--random-weights`` build the real architecture with no network. With real
weights the downloaded (or local) config.json is used instead.
"""

from __future__ import annotations

HUB_REPO = "hexgrad/Kokoro-82M"
WEIGHTS_FILE = "kokoro-v1_0.pth"

# phoneme -> token id; 0 is the padding/boundary token added at both ends of every utterance
_VOCAB_TEXT = (
    ";:,.!?"
    + '\u2014\u2026"()\u201c\u201d '
    + "\u0303\u02a3\u02a5\u02a6\u02a8\u1d5d\uab67"
    + "AIOQSTWY\u1d4a"
    + "abcdefhijklmnopqrstuvwxyz"
    + "\u0251\u0250\u0252\u00e6\u03b2\u0254\u0255\u00e7\u0256\u00f0\u02a4\u0259"
    + "\u025a\u025b\u025c\u025f\u0261\u0265\u0268\u026a\u029d\u026f\u0270"
    + "\u014b\u0273\u0272\u0274\u00f8\u0278\u03b8\u0153\u0279\u027e\u027b\u0281\u027d\u0282"
    + "\u0283\u0288\u02a7\u028a\u028b\u028c\u0263\u0264\u03c7\u028e\u0292\u0294"
    + "\u02c8\u02cc\u02d0\u02b0\u02b2\u2193\u2192\u2197\u2198\u1d7b"
)
_VOCAB_IDS = (
    [1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]
    + [24, 25, 31, 33, 35, 36, 39, 41, 42]
    + list(range(43, 49))
    + list(range(50, 69))
    + [69, 70, 71, 72, 75, 76, 77, 78, 80, 81, 82, 83, 85, 86, 87, 90, 92, 99, 101, 102, 103, 110, 111]
    + [
        112,
        113,
        114,
        115,
        116,
        118,
        119,
        120,
        123,
        125,
        126,
        128,
        129,
        130,
        131,
        132,
        133,
        135,
        136,
        138,
        139,
        140,
        142,
        143,
        147,
        148,
    ]
    + [156, 157, 158, 162, 164, 169, 171, 172, 173, 177]
)
VOCAB: dict[str, int] = dict(zip(_VOCAB_TEXT, _VOCAB_IDS))

CONFIG: dict = {
    "istftnet": {
        "upsample_kernel_sizes": [20, 12],
        "upsample_rates": [10, 6],
        "gen_istft_hop_size": 5,
        "gen_istft_n_fft": 20,
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "resblock_kernel_sizes": [3, 7, 11],
        "upsample_initial_channel": 512,
    },
    "dim_in": 64,
    "dropout": 0.2,
    "hidden_dim": 512,
    "max_conv_dim": 512,
    "max_dur": 50,
    "multispeaker": True,
    "n_layer": 3,
    "n_mels": 80,
    "n_token": 178,
    "style_dim": 128,
    "text_encoder_kernel_size": 5,
    "plbert": {
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 2048,
        "max_position_embeddings": 512,
        "num_hidden_layers": 12,
        "dropout": 0.1,
    },
    "vocab": VOCAB,
}


#: the reduced architecture's decoder width (upstream's Decoder hard-codes 1024 for its AdaIN blocks)
SMALL_DECODER_WIDTH = 256


def small_config() -> dict:
    """A reduced architecture for tests: a 2-layer ALBERT of width 128, one prosody LSTM layer,
    and a narrow decoder (upsample_initial_channel 128; the AdaIN blocks' hard-coded 1024 become
    SMALL_DECODER_WIDTH in reference.narrow_decoder). hidden_dim and style_dim stay (KModel
    slices the style vector at 128; the decoder's residual path reads hidden_dim 512)."""
    import copy

    config = copy.deepcopy(CONFIG)
    config["plbert"].update(hidden_size=128, num_attention_heads=2, intermediate_size=256, num_hidden_layers=2)
    config["n_layer"] = 1  # style_dim stays 128: KModel.forward slices the style vector at 128
    config["istftnet"]["upsample_initial_channel"] = 128
    return config
