"""``nn.Linear`` as a 1x1 convolution on ``(B, C, 1, L)`` activations.

Principle (apple/ml-ane-transformers): the Neural Engine's native layout is channels first with the
sequence last; a 1x1 ``Conv2d`` is its linear layer, and an upstream ``[out, in]`` weight loads into it
unchanged through a state-dict hook, so checkpoints need no conversion.
"""

from __future__ import annotations

from typing import Any

from torch import nn


class Conv1x1(nn.Conv2d):
    """``nn.Linear(in_features, out_features)`` on ``(B, C, 1, L)`` activations."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, kernel_size=1, bias=bias)
        self._register_load_state_dict_pre_hook(self._linear_weights)

    @staticmethod
    def _linear_weights(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        key = prefix + "weight"
        if key in state_dict and state_dict[key].dim() == 2:
            state_dict[key] = state_dict[key][:, :, None, None]

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Conv1x1":
        conv = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        conv.load_state_dict(linear.state_dict())
        return conv
