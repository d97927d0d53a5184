"""build_traceables for Kokoro-82M: ``predictor`` (one function per token bucket) and ``decoder``.

``predictor``: ALBERT + duration encoder + prosody LSTM + text encoder at a fixed
token bucket, with the utterance's length as an input. Padding is masked out
everywhere it could leak: ALBERT's attention never looks at padded keys, every
convolution output is re-zeroed at padded positions, and each bidirectional LSTM
runs forward over the valid prefix and backward from the last *valid* token (the
prefix reversed in place) — what ``pack_padded_sequence`` does upstream, without
packing. Outputs at padded positions are zero. The buckets' functions share their
weights in one multifunction package.

``decoder`` (decoder.py): F0/N prediction, decoder and generator over a flexible
frame axis, so no padded frame ever reaches an InstanceNorm, LSTM or convolution.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .options import KokoroOptions


def _direction(lstm: nn.LSTM, suffix: str) -> nn.LSTM:
    """One direction of a bidirectional single-layer LSTM as its own batch-first LSTM."""
    single = nn.LSTM(lstm.input_size, lstm.hidden_size, 1, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(single, name).copy_(getattr(lstm, name + suffix))
    return single.eval()


class MaskedBiLSTM(nn.Module):
    """A bidirectional LSTM over the first ``valid`` steps of x [1, L, C]; zeros after them."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        if not (lstm.bidirectional and lstm.num_layers == 1 and lstm.batch_first):
            raise NotImplementedError("single-layer batch-first bidirectional LSTMs only")
        self.forward_lstm = _direction(lstm, "")
        self.backward_lstm = _direction(lstm, "_reverse")

    def forward(self, x: torch.Tensor, valid: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        steps = torch.arange(length, dtype=torch.float32)
        v = valid.to(torch.float32)
        # reverse the valid prefix in place: step t reads step valid-1-t; padding stays where it is
        order = torch.where(steps < v, v - 1 - steps, steps).to(torch.int32)
        forward_out, _ = self.forward_lstm(x)
        backward_out, _ = self.backward_lstm(torch.index_select(x, 1, order))
        backward_out = torch.index_select(backward_out, 1, order)
        return torch.cat([forward_out, backward_out], dim=-1) * keep.view(1, length, 1)


class Predictor(nn.Module):
    """input_ids [1, L] (0-padded), valid [1], style [1, 256], speed [1] -> durations, d, t_en.

    * ``duration`` [1, L]: the sum of the duration head's sigmoids divided by speed
      (the host rounds it, as upstream: round, at least 1);
    * ``d`` [1, L, hidden + style]: the duration encoder's features (aligned on the host);
    * ``t_en`` [1, hidden, L]: the text encoder's features (aligned on the host).
    """

    def __init__(self, kmodel: Any, bucket: int):
        super().__init__()
        from kokoro.modules import AdaLayerNorm

        self.bucket = bucket
        self.bert = kmodel.bert
        self.bert_encoder = kmodel.bert_encoder
        predictor = kmodel.predictor
        encoder = predictor.text_encoder
        self.blocks = nn.ModuleList()
        self.kinds = []
        for block in encoder.lstms:
            if isinstance(block, AdaLayerNorm):
                self.blocks.append(block)
                self.kinds.append("norm")
            else:
                self.blocks.append(MaskedBiLSTM(block))
                self.kinds.append("lstm")
        self.style_dim = encoder.sty_dim
        self.prosody_lstm = MaskedBiLSTM(predictor.lstm)
        self.duration_proj = predictor.duration_proj
        text = kmodel.text_encoder
        self.embedding = text.embedding
        self.cnn = text.cnn
        self.text_lstm = MaskedBiLSTM(text.lstm)

    def forward(
        self, input_ids: torch.Tensor, valid: torch.Tensor, style: torch.Tensor, speed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # traced: the bucket, a Python int (shape arithmetic would trace into int ops); in eager
        # torch (the torch backend) any length, so unpadded tokens run exactly as KModel runs them
        length = self.bucket if torch.jit.is_tracing() else int(input_ids.shape[1])
        ids = input_ids.to(torch.int64)
        keep = (torch.arange(length, dtype=torch.float32) < valid.to(torch.float32)).to(torch.float32)  # [L]
        s = style[:, self.style_dim :]

        # ALBERT, attending to the valid keys only
        hidden = self.bert.embeddings(ids)
        mask = (keep > 0.5).view(1, 1, 1, length)
        hidden = self.bert.encoder(hidden, mask)[0]
        d_en = self.bert_encoder(hidden)  # [1, L, hidden]

        # duration encoder: LSTM / AdaLayerNorm blocks, style concatenated, padding zeroed
        styles = s.view(1, 1, -1).expand(1, length, -1)
        x = torch.cat([d_en, styles], dim=-1) * keep.view(1, length, 1)
        for block, kind in zip(self.blocks, self.kinds):
            if kind == "norm":
                x = block(x, s)
                x = torch.cat([x, styles], dim=-1) * keep.view(1, length, 1)
            else:
                x = block(x, valid, keep)
        d = x  # [1, L, hidden + style]

        lstm_out = self.prosody_lstm(d, valid, keep)
        duration = torch.sigmoid(self.duration_proj(lstm_out)).sum(dim=-1) / speed * keep.view(1, length)

        # text encoder: embedding, CNN blocks re-masked after each, LSTM
        t = self.embedding(ids).transpose(1, 2) * keep.view(1, 1, length)
        for block in self.cnn:
            t = block(t) * keep.view(1, 1, length)
        t_en = self.text_lstm(t.transpose(1, 2), valid, keep).transpose(1, 2)
        return duration, d, t_en


def upstream_predictor(kmodel: Any, input_ids: Any, valid: Any, style: Any, speed: Any) -> dict[str, Any]:
    """KModel.forward_with_tokens' first half on the unpadded tokens; zeros at the padded positions."""
    import numpy as np

    n = int(valid[0])
    length = np.shape(input_ids)[1]
    ids = torch.as_tensor(np.asarray(input_ids)[:, :n], dtype=torch.int64)
    ref_s = torch.as_tensor(style)
    with torch.no_grad():
        lengths = torch.full((1,), n, dtype=torch.long)
        text_mask = torch.zeros((1, n), dtype=torch.bool)
        bert_dur = kmodel.bert(ids, attention_mask=(~text_mask).int())
        d_en = kmodel.bert_encoder(bert_dur).transpose(-1, -2)
        s = ref_s[:, 128 if ref_s.shape[1] == 256 else ref_s.shape[1] // 2 :]
        d = kmodel.predictor.text_encoder(d_en, s, lengths, text_mask)
        x, _ = kmodel.predictor.lstm(d)
        duration = torch.sigmoid(kmodel.predictor.duration_proj(x)).sum(dim=-1) / float(
            np.asarray(speed).reshape(-1)[0]
        )
        t_en = kmodel.text_encoder(ids, lengths, text_mask)
    dtype = np.asarray(style).dtype  # float64 in the float64 parity check
    out_duration = np.zeros((1, length), dtype)
    out_duration[:, :n] = duration.numpy()
    out_d = np.zeros((1, length, d.shape[-1]), dtype)
    out_d[:, :n] = d.numpy()
    out_t = np.zeros((1, t_en.shape[1], length), dtype)
    out_t[:, :, :n] = t_en.numpy()
    return {"duration": out_duration, "d": out_d, "t_en": out_t}


# ----------------------------------------------------------------------------- build


def _token_example(kref: Any, bucket: int, count: int, rng: Any) -> dict[str, Any]:
    """``count`` tokens (boundary 0s included) of random phonemes, 0-padded to ``bucket``."""
    import numpy as np

    ids = np.zeros((1, bucket), np.int32)
    ids[0, 1 : count - 1] = rng.choice(sorted(set(kref.config["vocab"].values())), count - 2)
    voice = next(iter(kref.voices.values()))
    style = np.asarray(voice[count - 3], dtype=np.float32).reshape(1, -1)  # upstream: pack[len(phonemes) - 1]
    return {
        "input_ids": ids,
        "valid": np.array([count], np.int32),
        "style": style,
        "speed": np.array([1.0], np.float32),
    }


def _decoder_example(kref: Any, count: int, rng: Any) -> dict[str, Any]:
    """Decoder inputs as the run loop makes them: upstream predictor features aligned by its durations."""
    import numpy as np

    from .loop import align

    tokens = _token_example(kref, count, count, rng)
    en, asr, _ = align(upstream_predictor(kref.model, **tokens), count)
    noise = rng.standard_normal((1, 600 * en.shape[2], 9)).astype(np.float32)
    return {"en": en, "asr": asr, "style": tokens["style"], "noise": noise}


def build(kref: Any, options: KokoroOptions, precision: str) -> dict[str, Any]:
    import numpy as np

    from ...core import TensorSpec, Traceable
    from .decoder import Decoder, fp32_scopes, upstream_decoder

    model = kref.model
    style_width = 2 * model.predictor.text_encoder.sty_dim
    rng = np.random.default_rng(0)

    predictor: dict[str, Traceable] = {}
    for bucket in options.buckets:
        counts = sorted({max(3, bucket // 2 + 1), bucket})
        predictor[f"tokens{bucket}"] = Traceable(
            module=Predictor(model, bucket).eval(),
            inputs=[
                TensorSpec("input_ids", (1, bucket), "int32"),
                TensorSpec("valid", (1,), "int32"),
                TensorSpec("style", (1, style_width)),
                TensorSpec("speed", (1,)),
            ],
            outputs=["duration", "d", "t_en"],
            examples=[_token_example(kref, bucket, n, rng) for n in counts],
            reference=lambda **kw: upstream_predictor(model, **kw),
        )

    max_frames = options.max_frames
    channels = model.predictor.text_encoder.d_model + model.predictor.text_encoder.sty_dim
    examples = [_decoder_example(kref, n, rng) for n in options.decoder_tokens]
    decoder = Traceable(
        module=Decoder(model).eval(),
        inputs=[
            TensorSpec("en", (1, channels, 1), flexible={2: (1, max_frames)}),
            TensorSpec("asr", (1, 512, 1), flexible={2: (1, max_frames)}),
            TensorSpec("style", (1, style_width)),
            TensorSpec("noise", (1, 600, 9), flexible={1: (600, 600 * max_frames)}),
        ],
        outputs=["audio"],
        examples=examples,
        reference=lambda **kw: upstream_decoder(model, **kw),
        convert_options={
            # IEEE division as traced: the chaotic generator turns x * (1/y) vs x / y into audible differences
            "remove_passes": ["common::divide_to_multiply"],
            # the variant's fp32 islands in an fp16 export (the harmonic source: its phase does not fit fp16)
            **({"op_selector": fp32_scopes(options.fp32_scopes)} if options.fp32_scopes else {}),
        },
    )
    return {"predictor": predictor, "decoder": decoder}
