"""The options of a training run (``TrainConfig``): each field with its help text, read from a YAML file and
flags, and checked before anything is written."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch.nn import functional as F

from ..model import PRESETS, WDSR, WDSRConfig

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss}


def option(default, help: str, shown: str | None = None):
    """A TrainConfig field: its default, its ``--help`` text and, where the value alone would not say what it
    does, how the default is shown there."""
    kwargs = {"default_factory": default} if callable(default) else {"default": default}
    return dataclasses.field(metadata={"help": help, "shown": shown}, **kwargs)


@dataclasses.dataclass
class TrainConfig:
    data: str = option("", "training images: an HR folder (LR made by MATLAB-compatible bicubic), or a DIV2K root "
                           "with *_HR and *_LR_bicubic/X{scale} folders", shown="none")
    val_data: str | None = option(None, "held-out folder (same layouts) scored every --val-every steps: PSNR-Y and "
                                        "SSIM-Y, shave = scale; the best weights are kept as best.safetensors",
                                  shown="none, no validation")
    out: str = option("runs/wdsr", "run folder; one that already holds a run is refused unless --resume continues it")
    preset: str = option("wdsr-b-32x16", f"architecture: one of {', '.join(sorted(PRESETS))}")
    scale: int = option(2, "upscaling factor: 2, 3 or 4")
    model: dict = option(dict, 'WDSR keyword overrides of the preset, as a JSON object, e.g. \'{"n_resblocks": 8}\'',
                         shown="none")
    init: str | None = option(None, "start from these weights (any checkpoint load_model reads, the authors' "
                                    "included); its architecture must match --preset/--model; at another scale the "
                                    "head and body are taken and the tail and skip start fresh",
                              shown="none, fresh weights")
    patch: int = option(48, "LR patch size in pixels (HR patches are scale times larger)")
    batch: int = option(16, "patches per step (over all processes under torchrun)")
    patches_per_image: int = option(1000, "patches drawn from each image per epoch")
    steps: int = option(300_000, "optimiser steps in all")
    loss: str = option("l1", "pixel loss on [0, 1] images: l1 (the paper's) or l2 (mean squared error, what PSNR "
                             "measures)")
    lr: float = option(1e-3, "Adam learning rate")
    warmup: int = option(0, "steps over which the lr rises linearly from lr/warmup to lr (0: none), e.g. for a "
                            "fine-tune from trained weights (--init), whose optimiser starts afresh")
    milestones: list[int] | None = option(None, "comma-separated steps at which the lr is multiplied by --gamma",
                                          shown="2/3 and 5/6 of --steps")
    gamma: float = option(0.2, "lr factor at each milestone")
    ema: float = option(0.0, "decay of an exponential moving average of the weights, which are then the ones saved "
                             "(0: off), e.g. 0.999")
    autocast: str | None = option(None, "mixed precision: bf16, or fp16 with a gradient scaler", shown="none, fp32")
    workers: int = option(2, "data loader worker processes (0: load in the training process)")
    seed: int = option(0, "seed of the initialisation and of the patches")
    strict: bool = option(False, "unusable images are an error instead of being skipped")
    log_every: int = option(100, "steps between log.csv rows (mean loss, lr)")
    val_every: int = option(5000, "steps between validations on --val-data")
    checkpoint_every: int = option(1000, "steps between checkpoints (train_state.pt, the previous one kept as "
                                         "train_state.prev.pt)")
    device: str = option("cuda" if torch.cuda.is_available() else "cpu", "cpu or cuda",
                         shown="cuda if available, else cpu")

    def model_config(self) -> WDSRConfig:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        return WDSRConfig(**{**PRESETS[self.preset], "scale": self.scale, **self.model})


def load_config(path: Path | None, overrides: dict) -> TrainConfig:
    values: dict = {}
    if path is not None:
        import yaml

        values = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(values) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = TrainConfig(**values)
    if not cfg.data:
        raise ValueError("no training data: give --data DIR (or `data:` in the config file)")
    if cfg.batch < 1 or cfg.steps < 1 or cfg.patch < 1:
        raise ValueError("batch, steps and patch must be positive")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {cfg.loss!r}")
    if cfg.warmup < 0:
        raise ValueError(f"warmup must be 0 or more steps, got {cfg.warmup}")
    if cfg.autocast is not None and cfg.autocast not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)} (or unset for fp32), got {cfg.autocast!r}")
    return cfg


ARCHITECTURE = ("variant", "n_feats", "n_resblocks", "wide_feats", "low_rank_feats", "res_scale")


def fine_tune_config(start: WDSRConfig, wanted: WDSRConfig, path) -> WDSRConfig:
    """The configuration of a run started from a checkpoint with config ``start``: ``wanted``'s architecture and
    scale, the checkpoint's input convention (rgb_range, rgb_mean, norm_scale). A different architecture is an
    error naming each field that differs."""
    differ = [f"{name} {getattr(start, name)} (the run: {getattr(wanted, name)})" for name in ARCHITECTURE
              if getattr(start, name) != getattr(wanted, name)]
    if differ:
        raise ValueError(f"--init {path}: a different architecture: " + ", ".join(differ)
                         + "; choose the matching --preset / --model")
    return dataclasses.replace(wanted, block_feats=start.block_feats, rgb_range=start.rgb_range,
                               rgb_mean=start.rgb_mean, norm_scale=start.norm_scale)


def transferable_weights(start: WDSR, model: WDSR) -> dict:
    """``start``'s tensors that fit ``model``: all of them at the same scale; at another scale the head and body
    (the tail and skip, whose widths depend on the scale, keep their fresh initialisation)."""
    shapes = {name: value.shape for name, value in model.state_dict().items()}
    return {name: value for name, value in start.state_dict().items() if shapes.get(name) == value.shape}
