"""Weight norm folded into plain conv weights, for inference.

``fold(model)`` reads a reference ``WDSR`` once and returns ``FoldedWDSR``: plain OIHW weights and
biases, per layer, the form every backend's ops take (``ops/reference.py`` is the contract).
``folded_copy(model)`` returns an ordinary ``nn.Module`` with ``nn.Conv2d`` layers instead of weight-normed
ones, bit-for-bit equal in output (the same ``torch._weight_norm`` arithmetic, done once).
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from .config import WDSRConfig
from .network import WDSR, WNConv2d

Conv = tuple[torch.Tensor, torch.Tensor]  # (weight O x I x k x k, bias O)


def fold_conv(conv: WNConv2d) -> Conv:
    """The plain (weight, bias) of a weight-normed conv, detached."""
    with torch.no_grad():
        return conv.weight.detach().clone(), conv.bias.detach().clone()


@dataclasses.dataclass
class FoldedWDSR:
    """Plain weights of a WDSR, layer by layer.

    blocks[i] is (w_expand, b_expand, w_reduce, b_reduce) for WDSR-A (two 3x3 convs) and
    (w_expand, b_expand, w_reduce, b_reduce, w_conv, b_conv) for WDSR-B (1x1, 1x1, 3x3).
    """

    config: WDSRConfig
    head: Conv
    blocks: list[tuple[torch.Tensor, ...]]
    tail: Conv
    skip: Conv
    mean: torch.Tensor  # (3,) fp32, in pixel units

    def to(self, device=None, dtype=None) -> FoldedWDSR:
        """Weights cast to the activation dtype (the mean stays fp32), on ``device``."""

        def cast(ts):
            return tuple(t.to(device=device, dtype=dtype).contiguous() for t in ts)

        return FoldedWDSR(self.config, cast(self.head), [cast(b) for b in self.blocks], cast(self.tail),
                          cast(self.skip), self.mean.to(device=device))


def fold(model: WDSR) -> FoldedWDSR:
    blocks = []
    for block in model.body:
        convs = [m for m in block.modules() if isinstance(m, WNConv2d)]
        blocks.append(tuple(t for conv in convs for t in fold_conv(conv)))
    head, tail, skip = (cast_wn(sequence[0]) for sequence in (model.head, model.tail, model.skip))
    mean = torch.tensor(model.config.pixel_mean, dtype=torch.float32, device=head.bias.device)
    return FoldedWDSR(model.config, fold_conv(head), blocks, fold_conv(tail), fold_conv(skip), mean)


def cast_wn(module: nn.Module) -> WNConv2d:
    assert isinstance(module, WNConv2d)
    return module


def folded_copy(model: WDSR) -> WDSR:
    """A copy of ``model`` whose weight-normed convs are plain ``nn.Conv2d`` (for torch.compile, export)."""
    folded = copy.deepcopy(model)
    for parent in list(folded.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, WNConv2d):
                weight, bias = fold_conv(child)
                conv = nn.Conv2d(weight.shape[1], weight.shape[0], child.kernel_size, padding=child.padding,
                                 device=weight.device, dtype=weight.dtype)
                with torch.no_grad():
                    conv.weight.copy_(weight)
                    conv.bias.copy_(bias)  # type: ignore[union-attr]
                setattr(parent, name, conv)
    return folded
