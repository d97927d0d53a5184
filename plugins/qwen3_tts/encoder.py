"""The speaker encoder (ECAPA-TDNN) in the Neural Engine's layout, for one fixed-length bucket.

Upstream (``Qwen3TTSSpeakerEncoder``) runs Conv1d on [B, C, T] over a clip of any length. The port:

* tensors are [B, C, 1, T] and every convolution a Conv2d with a (1, k) kernel: the ANE's native
  layout is channels-first 4-D with the sequence on the last axis (apple/ml-ane-transformers).
* the clip is padded to the bucket's T frames and ``valid`` says how many are real: static shapes are
  what the ANE compiles; one function per bucket, weights shared (a multifunction package).
* upstream pads every convolution by reflection at the clip's own end; the port reflects at ``valid``,
  not at T, by gathering the padded sequence (an index vector computed from ``valid``), so each real
  frame sees what it sees upstream on the unpadded clip.
* the squeeze-excitation mean and the attentive statistics are masked to the real frames (upstream's
  pooling masks nothing: its clip has no padding), so the padding never reaches the embedding.
* reductions run over the last axis and the mask is one [1, 1, 1, T] broadcast, made once per call.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv2d(conv: nn.Conv1d) -> nn.Conv2d:
    """Upstream's Conv1d as a Conv2d over [B, C, 1, T] with the same weights (kernel [out, in, 1, k])."""
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        (1, conv.kernel_size[0]),
        dilation=(1, conv.dilation[0]),
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        out.weight.copy_(conv.weight.detach()[:, :, None, :])
        if conv.bias is not None:
            out.bias.copy_(conv.bias.detach())
    return out


class ReflectConv(nn.Module):
    """``Conv1d(padding="same", padding_mode="reflect")`` of upstream on x [1, C, 1, T] whose first
    ``valid`` frames are real: padded by reflection at frame 0 and at frame ``valid - 1``."""

    def __init__(self, conv: nn.Conv1d, length: int):
        super().__init__()
        self.conv = _conv2d(conv)
        self.pad = conv.dilation[0] * (conv.kernel_size[0] - 1) // 2
        self.length = length
        if self.pad:
            # position of each padded frame in the clip: -pad .. length + pad - 1
            positions = torch.arange(-self.pad, length + self.pad, dtype=torch.int32)
            # the left edge reflects whatever the length (frame -j is frame j); positions past the
            # bucket are clamped here and reflected at ``valid`` in forward
            self.register_buffer("positions", positions, persistent=False)
            self.register_buffer("left", positions.abs().clamp(max=length - 1), persistent=False)
            self.register_buffer("zero", torch.zeros(1, dtype=torch.int32), persistent=False)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x [1, C_in, 1, T], valid [1] int32 -> [1, C_out, 1, T]."""
        if not self.pad:
            return self.conv(x)
        # integer arithmetic throughout (maximum, not clamp: clamp converts through float)
        last = valid - 1
        beyond = torch.maximum(2 * last - self.positions, self.zero)  # frame valid - 1 + j is frame valid - 1 - j
        index = torch.where(self.positions > last, beyond, self.left).to(torch.int32)
        return self.conv(torch.index_select(x, 3, index))


class TDNN(nn.Module):
    """``TimeDelayNetBlock``: reflect-padded convolution, then ReLU."""

    def __init__(self, block: nn.Module, length: int):
        super().__init__()
        self.conv = ReflectConv(block.conv, length)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x, valid))


class Res2Net(nn.Module):
    """``Res2NetBlock``: the channels split in ``scale`` parts in order; part 0 passes, part 1 goes
    through block 0, part i (i >= 2) through block i - 1 after the previous part's output is added."""

    def __init__(self, block: nn.Module, length: int):
        super().__init__()
        self.scale = block.scale
        self.blocks = nn.ModuleList(TDNN(b, length) for b in block.blocks)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(x, self.scale, dim=1)
        outputs = [parts[0]]
        previous = self.blocks[0](parts[1], valid)
        outputs.append(previous)
        for i in range(2, self.scale):
            previous = self.blocks[i - 1](parts[i] + previous, valid)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """``SqueezeExcitationBlock`` with the mean over the real frames only (``mask`` / ``count``)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.conv1 = _conv2d(block.conv1)
        self.conv2 = _conv2d(block.conv2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        mean = (x * mask).sum(dim=3, keepdim=True) / count
        return x * torch.sigmoid(self.conv2(torch.relu(self.conv1(mean))))


class SERes2Net(nn.Module):
    """``SqueezeExcitationRes2NetBlock``: TDNN, Res2Net, TDNN, squeeze-excitation, plus the input."""

    def __init__(self, block: nn.Module, length: int):
        super().__init__()
        self.tdnn1 = TDNN(block.tdnn1, length)
        self.res2net = Res2Net(block.res2net_block, length)
        self.tdnn2 = TDNN(block.tdnn2, length)
        self.se = SqueezeExcitation(block.se_block)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        h = self.tdnn2(self.res2net(self.tdnn1(x, valid), valid), valid)
        return self.se(h, mask, count) + x


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis of the real frames only (upstream: ``masked_fill(-inf)`` then softmax),
    with no infinity in the graph: the shift is the largest real logit (found with the smallest logit of
    all standing in for the padding), the padding's exponent is clipped to 0 and its weight multiplied away."""
    lowest = logits.amin(dim=3, keepdim=True)
    peak = torch.where(mask > 0, logits, lowest).amax(dim=3, keepdim=True)
    # real frames are <= 0 after the shift; the padding is clipped there too (no overflow), then zeroed.
    # (a zeros_like here would be folded into a [1, C, 1, T] constant: 6 MB of fp16 in the package)
    weights = torch.exp(torch.clamp(logits - peak, max=0.0)) * mask
    return weights / weights.sum(dim=3, keepdim=True)


class AttentivePooling(nn.Module):
    """``AttentiveStatisticsPooling`` over the real frames: x [1, C, 1, T] -> [1, 2C, 1, 1] (the
    attention-weighted mean and standard deviation of each channel)."""

    def __init__(self, asp: nn.Module, length: int):
        super().__init__()
        self.eps = asp.eps
        self.length = length
        self.tdnn = TDNN(asp.tdnn, length)
        self.conv = _conv2d(asp.conv)

    def _statistics(self, x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (weights * x).sum(dim=3, keepdim=True)
        std = torch.sqrt((weights * (x - mean).pow(2)).sum(dim=3, keepdim=True).clamp(min=self.eps))
        return mean, std

    def forward(self, x: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        mean, std = self._statistics(x, mask / count)
        # the bucket's frames as a constant, never read from x.shape (shape arithmetic does not convert)
        context = torch.cat([x, mean.expand(-1, -1, -1, self.length), std.expand(-1, -1, -1, self.length)], dim=1)
        attention = self.conv(torch.tanh(self.tdnn(context, valid)))
        mean, std = self._statistics(x, masked_softmax(attention, mask))
        return torch.cat([mean, std], dim=1)


class SpeakerEncoder(nn.Module):
    """The whole encoder for a bucket of ``length`` frames: mels [1, 128, 1, length] (the first
    ``valid`` frames real) -> embedding [1, enc_dim]."""

    def __init__(self, upstream: nn.Module, length: int):
        super().__init__()
        self.length = length
        self.first = TDNN(upstream.blocks[0], length)
        self.blocks = nn.ModuleList(SERes2Net(b, length) for b in upstream.blocks[1:])
        self.mfa = TDNN(upstream.mfa, length)
        self.pooling = AttentivePooling(upstream.asp, length)
        self.fc = _conv2d(upstream.fc)
        self.register_buffer("frames", torch.arange(length, dtype=torch.int32)[None, None, None, :], persistent=False)

    def forward(self, mels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        mask = (self.frames < valid).to(mels.dtype)  # [1, 1, 1, T]: 1 on the real frames
        count = valid.to(mels.dtype)
        h = self.first(mels, valid)
        outputs = []
        for block in self.blocks:
            h = block(h, valid, mask, count)
            outputs.append(h)
        h = self.mfa(torch.cat(outputs, dim=1), valid)
        pooled = self.pooling(h, valid, mask, count)
        return self.fc(pooled).flatten(1)
