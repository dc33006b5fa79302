"""The work of WDSR, counted from the architecture: multiply-adds (2 FLOPs each, convs only) and the minimum bytes
a fully fused pipeline must move (each op reads its inputs and writes its output once, weights ignored)."""
from __future__ import annotations

from ..model import WDSRConfig

WHOLE_MODEL = ("head_conv", "blocks", "tail_shuffle")


def macs_per_pixel(cfg: WDSRConfig) -> dict[str, int]:
    """Multiply-adds per LR pixel of each op (convs only); "block" is one block, "blocks" all of them."""
    c, out = cfg.n_feats, cfg.out_feats
    if cfg.variant == "a":
        block = 2 * 9 * c * cfg.wide_feats
    else:
        block = c * cfg.wide_feats + cfg.wide_feats * cfg.low_rank_feats + 9 * cfg.low_rank_feats * c
    return {"head_conv": 27 * c, "block": block, "blocks": block * cfg.n_resblocks,
            "tail_shuffle": 9 * c * out + 75 * out}


def min_bytes_per_pixel(cfg: WDSRConfig, element_size: int) -> dict[str, int]:
    """Bytes per LR pixel each fused op must read and write (weights ignored)."""
    c, out = cfg.n_feats, cfg.out_feats
    block = 2 * c * element_size
    return {"head_conv": (3 + c) * element_size, "block": block, "blocks": block * cfg.n_resblocks,
            "tail_shuffle": (c + 3 + out) * element_size}


def model_work(cfg: WDSRConfig, lr_pixels: int, element_size: int) -> tuple[float, float]:
    """(FLOPs, minimum bytes) of one whole forward over ``lr_pixels`` LR pixels."""
    macs, nbytes = macs_per_pixel(cfg), min_bytes_per_pixel(cfg, element_size)
    return 2.0 * lr_pixels * sum(macs[k] for k in WHOLE_MODEL), float(lr_pixels * sum(nbytes[k] for k in WHOLE_MODEL))


def op_work(cfg: WDSRConfig, op: str, lr_pixels: int, element_size: int) -> tuple[float, float]:
    """(FLOPs, minimum bytes) of one call of op ``op`` (an op of the contract) over ``lr_pixels`` LR pixels."""
    key = "block" if op in ("wdsr_a_block", "wdsr_b_block") else op
    return 2.0 * macs_per_pixel(cfg)[key] * lr_pixels, float(min_bytes_per_pixel(cfg, element_size)[key] * lr_pixels)
