"""Named WDSR configurations people use, and ``preset()`` to build one."""
from __future__ import annotations

from .network import WDSR

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
