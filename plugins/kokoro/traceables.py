"""build_traceables for Kokoro-82M.

``predictor``: ALBERT + duration encoder + prosody LSTM + text encoder at a fixed
token bucket, with the utterance's length as an input. Padding is masked out
everywhere it could leak: ALBERT's attention never looks at padded keys, every
convolution output is re-zeroed at padded positions, and each bidirectional LSTM
runs forward over the valid prefix and backward from the last *valid* token (the
prefix reversed in place) — what ``pack_padded_sequence`` does upstream, without
packing. Outputs at padded positions are zero.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


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

    def forward(self, input_ids: torch.Tensor, valid: torch.Tensor, style: torch.Tensor, speed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        length = self.bucket
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
        duration = torch.sigmoid(kmodel.predictor.duration_proj(x)).sum(dim=-1) / float(np.asarray(speed).reshape(-1)[0])
        t_en = kmodel.text_encoder(ids, lengths, text_mask)
    out_duration = np.zeros((1, length), np.float32)
    out_duration[:, :n] = duration.numpy()
    out_d = np.zeros((1, length, d.shape[-1]), np.float32)
    out_d[:, :n] = d.numpy()
    out_t = np.zeros((1, t_en.shape[1], length), np.float32)
    out_t[:, :, :n] = t_en.numpy()
    return {"duration": out_duration, "d": out_d, "t_en": out_t}
