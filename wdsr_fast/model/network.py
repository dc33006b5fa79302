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

from .key_layouts import translate_state_dict

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
VARIANTS = ("a", "b")
SCALES = (2, 3, 4)


@dataclasses.dataclass(frozen=True)
class WDSRConfig:
    """Everything that defines a WDSR network; stored beside the weights in our checkpoints."""

    variant: str = "b"
    scale: int = 2
    n_feats: int = 32
    n_resblocks: int = 16
    block_feats: int | None = None  # WDSR-A: width of the block's wide 3x3 (default 4 * n_feats)
    expansion: int = 6  # WDSR-B: width of the 1x1 expand is n_feats * expansion
    low_rank: float = 0.8  # WDSR-B: width of the 1x1 reduce is int(n_feats * low_rank)
    res_scale: float = 1.0
    rgb_range: float = 255.0
    rgb_mean: tuple = DIV2K_RGB_MEAN  # fractions of rgb_range, one per colour
    norm_scale: float | None = None  # divisor of the normalisation (default rgb_range / 2)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        for name in ("n_feats", "n_resblocks", "expansion"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.block_feats is not None and (not isinstance(self.block_feats, int) or self.block_feats < 1):
            raise ValueError(f"block_feats must be a positive integer or None, got {self.block_feats!r}")
        if not 0 < self.low_rank or int(self.n_feats * self.low_rank) < 1:
            raise ValueError(f"low_rank={self.low_rank} leaves no channels for n_feats={self.n_feats}")
        if len(tuple(self.rgb_mean)) != 3:
            raise ValueError(f"rgb_mean needs 3 values (R, G, B), got {self.rgb_mean!r}")
        object.__setattr__(self, "rgb_mean", tuple(float(m) for m in self.rgb_mean))
        if not self.rgb_range > 0 or (self.norm_scale is not None and not self.norm_scale > 0):
            raise ValueError("rgb_range and norm_scale must be positive")

    @property
    def wide_feats(self) -> int:
        """Channels of the block's wide activation (after the ReLU)."""
        if self.variant == "a":
            return self.block_feats or 4 * self.n_feats
        return self.n_feats * self.expansion

    @property
    def low_rank_feats(self) -> int:
        """WDSR-B: channels of the linear low-rank 1x1 output."""
        return int(self.n_feats * self.low_rank)

    @property
    def out_feats(self) -> int:
        """Channels before the pixel shuffle: 3 * scale**2."""
        return 3 * self.scale**2

    @property
    def pixel_mean(self) -> tuple:
        """The mean in pixel units (rgb_mean * rgb_range)."""
        return tuple(m * self.rgb_range for m in self.rgb_mean)

    @property
    def pixel_norm_scale(self) -> float:
        return self.rgb_range / 2 if self.norm_scale is None else self.norm_scale

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context each output pixel sees on each side (for tiling)."""
        per_block = 2 if self.variant == "a" else 1
        return max(2, 1 + per_block * self.n_resblocks + 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["rgb_mean"] = list(self.rgb_mean)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> WDSRConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown WDSR config keys: {sorted(unknown)}")
        d = dict(d)
        if "rgb_mean" in d:
            d["rgb_mean"] = tuple(d["rgb_mean"])
        return cls(**d)


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
    if image.numel() == 0:
        raise ValueError(f"empty image batch {tuple(image.shape)}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Named configurations people use. Each is a dict of WDSR keyword arguments; scale is given at build time.
PRESETS = {
    # The authors' WDSR-A baseline (1,190,100 parameters at x2).
    "wdsr-a-baseline": dict(variant="a", n_feats=32, block_feats=128, n_resblocks=16),
    # WDSR-B with n_feats 32 and 16 blocks (303,604 parameters at x2): the fused kernels' target.
    "wdsr-b-32x16": dict(variant="b", n_feats=32, n_resblocks=16, expansion=6, low_rank=0.8),
    # ychfan/wdsr small model (the one with public epoch_30.pth checkpoints): WDSR-A, [0, 1] input, mean 0.5.
    "ychfan-small": dict(variant="a", n_feats=32, block_feats=128, n_resblocks=16, rgb_range=1.0,
                         rgb_mean=(0.5, 0.5, 0.5), norm_scale=1.0),
    # ychfan/wdsr large model (32 blocks, 128 features, 512 wide).
    "ychfan-large": dict(variant="a", n_feats=128, block_feats=512, n_resblocks=32, rgb_range=1.0,
                         rgb_mean=(0.5, 0.5, 0.5), norm_scale=1.0),
}


def preset(name: str, scale: int = 2, **overrides) -> WDSR:
    """Build a reference model from a named preset, e.g. ``preset("wdsr-b-32x16", scale=3)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return WDSR(**{**PRESETS[name], "scale": scale, **overrides})

