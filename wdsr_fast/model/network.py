"""Reference WDSR-A and WDSR-B (Yu et al. 2018) in plain, trainable PyTorch.

The module tree and parameter names follow the authors' code (JiahuiYu/wdsr_ntire2018), so their
state_dicts load as they are: ``head.0``, ``body.{i}.body.{0,2[,3]}``, ``tail.0`` and ``skip.0``, each
conv holding ``bias``, ``weight_g`` and ``weight_v`` (the legacy ``torch.nn.utils.weight_norm`` layout).

Forward, for an image x in [0, rgb_range]:
    n = (x - rgb_mean * rgb_range) / norm_scale          # norm_scale defaults to rgb_range / 2
    y = shuffle(tail(body(head(n)))) + shuffle(skip(n))
    return y * norm_scale + rgb_mean * rgb_range

The authors' later release (ychfan/wdsr) is the same network with rgb_range 1, a scalar mean of 0.5,
norm_scale 1 and res_scale 1; ``key_layouts.py`` maps its key layout onto this one.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .config import DIV2K_RGB_MEAN, WDSRConfig
from .key_layouts import translate_state_dict


class WNConv2d(nn.Module):
    """A conv with weight normalisation: weight = weight_g * weight_v / ||weight_v|| per output channel.

    Same parameters, names and arithmetic (``torch._weight_norm``, no epsilon) as the legacy
    ``torch.nn.utils.weight_norm(nn.Conv2d(...))`` the authors used. At construction g = ||v||,
    so the initial weight equals PyTorch's default conv init, as in the authors' code.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel_size)
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        assert conv.bias is not None
        self.bias = nn.Parameter(conv.bias.detach().clone())
        self.weight_g = nn.Parameter(conv.weight.detach().flatten(1).norm(dim=1).view(-1, 1, 1, 1).clone())
        self.weight_v = nn.Parameter(conv.weight.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        """The effective (folded) weight, out x in x k x k."""
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        out_c, in_c = self.weight_v.shape[:2]
        return f"{in_c}, {out_c}, kernel_size={self.kernel_size}, padding={self.padding}, weight_norm=True"


class BlockA(nn.Module):
    """WDSR-A block: 3x3 n_feats -> wide, ReLU, 3x3 wide -> n_feats, times res_scale, plus input."""

    def __init__(self, n_feats: int, wide_feats: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.body = nn.Sequential(WNConv2d(n_feats, wide_feats, 3), nn.ReLU(True), WNConv2d(wide_feats, n_feats, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.res_scale + x


class BlockB(nn.Module):
    """WDSR-B block: 1x1 expand, ReLU, 1x1 linear low-rank reduce, 3x3 -> n_feats, times res_scale, plus input."""

    def __init__(self, n_feats: int, wide_feats: int, low_rank_feats: int, res_scale: float):
        super().__init__()
        self.res_scale = res_scale
        self.body = nn.Sequential(
            WNConv2d(n_feats, wide_feats, 1),  # expand
            nn.ReLU(True),
            WNConv2d(wide_feats, low_rank_feats, 1),  # reduce (linear, low rank)
            WNConv2d(low_rank_feats, n_feats, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.res_scale + x


class WDSR(nn.Module):
    """WDSR-A (``variant="a"``) or WDSR-B (``variant="b"``); see ``WDSRConfig`` for the arguments."""

    def __init__(self, variant: str = "b", scale: int = 2, n_feats: int = 32, n_resblocks: int = 16,
                 block_feats: int | None = None, expansion: int = 6, low_rank: float = 0.8,
                 res_scale: float = 1.0, rgb_range: float = 255.0, rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
                 norm_scale: float | None = None):
        super().__init__()
        cfg = WDSRConfig(variant=variant, scale=scale, n_feats=n_feats, n_resblocks=n_resblocks,
                         block_feats=block_feats, expansion=expansion, low_rank=low_rank, res_scale=res_scale,
                         rgb_range=rgb_range, rgb_mean=tuple(rgb_mean), norm_scale=norm_scale)
        self.config = cfg
        self.head = nn.Sequential(WNConv2d(3, n_feats, 3))
        blocks: list[nn.Module]
        if variant == "a":
            blocks = [BlockA(n_feats, cfg.wide_feats, res_scale) for _ in range(n_resblocks)]
        else:
            blocks = [BlockB(n_feats, cfg.wide_feats, cfg.low_rank_feats, res_scale) for _ in range(n_resblocks)]
        self.body = nn.Sequential(*blocks)
        self.tail = nn.Sequential(WNConv2d(n_feats, cfg.out_feats, 3), nn.PixelShuffle(scale))
        self.skip = nn.Sequential(WNConv2d(3, cfg.out_feats, 5), nn.PixelShuffle(scale))
        # Not buffers: the authors' checkpoints hold no mean, and the config is the source of truth.
        self._pixel_mean = torch.tensor(cfg.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1)

    @classmethod
    def from_config(cls, config: WDSRConfig) -> WDSR:
        return cls(**dataclasses.asdict(config))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also accepts the authors' layouts (JiahuiYu, ychfan), the parametrizations weight-norm keys, plain
        ``weight`` tensors and ``module.`` prefixes (see ``key_layouts.translate_state_dict``)."""
        state, _ = translate_state_dict(dict(state_dict))
        return super().load_state_dict(state, strict=strict, assign=assign)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        mean = self._pixel_mean.to(device=image.device, dtype=image.dtype)
        return (image - mean) / self.config.pixel_norm_scale

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        mean = self._pixel_mean.to(device=x.device, dtype=x.dtype)
        return x * self.config.pixel_norm_scale + mean

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: (N, 3, H, W) floats in [0, rgb_range] -> (N, 3, scale*H, scale*W), not clamped."""
        check_image(image)
        x = self.normalise(image)
        skip = self.skip(x)
        out = self.tail(self.body(self.head(x)))
        return self.denormalise(out + skip)


def check_image(image: torch.Tensor) -> None:
    """Clear errors for inputs every WDSR path rejects."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor image, got {type(image).__name__}")
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an RGB batch of shape (N, 3, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"expected a floating-point image (values in [0, rgb_range]), got {image.dtype}")
    if image.shape[2] == 0 or image.shape[3] == 0:  # an empty batch, (0, 3, H, W), gives an empty batch
        raise ValueError(f"empty image {tuple(image.shape)}: height and width must be at least 1 pixel")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
