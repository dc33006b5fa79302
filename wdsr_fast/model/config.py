"""What defines a WDSR network (``WDSRConfig``): widths, depth, scale and the pixel normalisation; stored beside
the weights in our checkpoints."""
from __future__ import annotations

import dataclasses

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
