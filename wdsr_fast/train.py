"""Training on the reference path, and the ``wdsr-fast train`` command.

The paper's recipe is the default: L1 loss (on [0, 1]-scaled images), Adam with lr 1e-3 (weight norm allows
it), batch 16 of 48x48 LR patches, the lr multiplied by ``gamma`` (0.2) at 2/3 and 5/6 of the steps (the
authors' 20 and 25 of 30 epochs), fp32. Options: an EMA of the weights, autocast (bf16/fp16).

A run writes into ``--out``: ``train_state.pt`` (model, optimiser, scheduler, EMA, step, RNG; written
atomically every ``checkpoint_every`` steps), ``log.csv`` (loss, lr, validation PSNR/SSIM), TensorBoard
events if tensorboard is installed, and ``model.safetensors`` at the end (the EMA weights when EMA is on).
``--resume`` continues exactly where the state file left off: patches are a pure function of (seed, epoch,
index), so the resumed run sees the batches the uninterrupted one would have.

Under ``torchrun --nproc_per_node N`` the same command trains with DistributedDataParallel and a
DistributedSampler (gloo on CPU, nccl on GPU); the global batch stays ``batch``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, DistributedSampler

from .atomic import atomic_path
from .checkpoint import load_model, save_model
from .data.datasets import PatchDataset, find_pairs
from .model import PRESETS, WDSR, WDSRConfig

STATE_FILE = "train_state.pt"
LOG_FIELDS = ("step", "loss", "lr", "val_psnr_y", "val_ssim_y")


@dataclasses.dataclass
class TrainConfig:
    data: str = ""
    val_data: str | None = None
    out: str = "runs/wdsr"
    preset: str = "wdsr-b-32x16"
    scale: int = 2
    model: dict = dataclasses.field(default_factory=dict)  # WDSR keyword overrides, e.g. {n_resblocks: 8}
    patch: int = 48
    batch: int = 16
    patches_per_image: int = 1000
    steps: int = 300_000
    lr: float = 1e-3
    milestones: list[int] | None = None  # default: 2/3 and 5/6 of the steps
    gamma: float = 0.2
    ema: float = 0.0  # EMA decay (0 = off), e.g. 0.999
    autocast: str | None = None  # None (fp32), "bf16" or "fp16"
    workers: int = 2
    seed: int = 0
    log_every: int = 100
    val_every: int = 5000
    checkpoint_every: int = 1000
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    init: str | None = None  # checkpoint to start from (fine-tuning)

    def model_config(self) -> WDSRConfig:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        return WDSRConfig(**{**PRESETS[self.preset], "scale": self.scale, **self.model})


def load_config(path: Path | None, overrides: dict) -> TrainConfig:
    values = {}
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


class Run:
    """One training process (one rank under torchrun)."""

    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if cfg.device == "cuda" else "gloo")
        if cfg.batch % self.world:
            raise ValueError(f"batch {cfg.batch} is not divisible by the {self.world} processes")
        self.device = torch.device(cfg.device, int(os.environ.get("LOCAL_RANK", 0)) if cfg.device == "cuda" else None)
        torch.manual_seed(cfg.seed)
        model_config = cfg.model_config()
        start = None
        if cfg.init:
            start = load_model(cfg.init)
            model_config = fine_tune_config(start.config, model_config, cfg.init)
        self.model = WDSR.from_config(model_config)
        if start is not None and not resume:
            self.model.load_state_dict(transferable_weights(start, self.model), strict=False)
        self.model.to(self.device)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        milestones = cfg.milestones or [cfg.steps * 2 // 3, cfg.steps * 5 // 6]
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, cfg.gamma)
        self.ema = None
        if cfg.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema))
        self.step = 0
        pairs = find_pairs(cfg.data, cfg.scale)
        self.dataset = PatchDataset(pairs, cfg.scale, cfg.patch, cfg.patches_per_image,
                                    self.model.config.rgb_range, seed=cfg.seed)
        self.steps_per_epoch = len(self.dataset) // cfg.batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.dataset)} patches per epoch is less than one batch of {cfg.batch}")
        self.sampler = DistributedSampler(self.dataset, self.world, self.rank, shuffle=True, seed=cfg.seed,
                                          drop_last=True)
        if resume:
            self.load_state()

    # -- state ----------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.model.state_dict(), "config": self.model.config.to_dict(),
                "train_config": dataclasses.asdict(self.cfg), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step,
                "ema": self.ema.state_dict() if self.ema is not None else None, "rng": torch.get_rng_state()}

    def save_state(self) -> None:
        if self.rank == 0:
            with atomic_path(self.out / STATE_FILE) as tmp:
                torch.save(self.state(), tmp)

    def load_state(self) -> None:
        path = self.out / STATE_FILE
        if not path.is_file():
            raise ValueError(f"--resume: no {STATE_FILE} in {self.out}")
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["config"] != self.model.config.to_dict():
            raise ValueError(f"--resume: {path} holds a different model ({state['config']})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"].cpu())
        self.step = state["step"]

    # -- loop -----------------------------------------------------------------------------------------
    def batches(self):
        """(lr, hr) batches from the current step on, across epochs."""
        per_rank = self.cfg.batch // self.world
        while True:
            epoch, skip = divmod(self.step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch)
            self.dataset.epoch = epoch
            indices = list(self.sampler)[skip * per_rank:]
            loader = DataLoader(self.dataset, batch_size=per_rank, sampler=indices, drop_last=True,
                                num_workers=self.cfg.workers, persistent_workers=False)
            yield from loader

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> float:
        self.net.train()
        range_ = self.model.config.rgb_range
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.cfg.autocast)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.l1_loss(self.net(lr.to(self.device)) / range_, hr.to(self.device) / range_)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return loss.item()

    def final_model(self) -> WDSR:
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> dict:
        from .evaluate import evaluate

        rows = evaluate(self.final_model(), self.cfg.val_data, self.cfg.scale, self.device)
        mean = next(r for r in rows if r["image"] == "MEAN" and r["method"] == "wdsr")
        self.model.train()
        return {"val_psnr_y": mean["psnr_y"], "val_ssim_y": mean["ssim_y"]}

    def run(self) -> Path:
        from tqdm import tqdm

        cfg = self.cfg
        log = Log(self.out, enabled=self.rank == 0)
        losses = []
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training", unit="step", disable=self.rank != 0,
                   file=sys.stderr)
        for lr, hr in self.batches():
            if self.step >= cfg.steps:
                break
            losses.append(self.train_step(lr, hr))
            bar.update(1)
            row = {}
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                row.update(loss=statistics.fmean(losses), lr=self.scheduler.get_last_lr()[0])
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                losses = []
            if cfg.val_data and self.rank == 0 and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                row.update(self.validate())
            if row:
                log.write(self.step, row)
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save_state()
        bar.close()
        log.close()
        final = self.out / "model.safetensors"
        if self.rank == 0:
            save_model(self.final_model(), final)
        if self.world > 1:
            torch.distributed.barrier()
        return final


class Log:
    """log.csv (appended, so a resumed run continues it) and TensorBoard events if available."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "log.csv"
        if not self.path.exists():
            self.path.write_text(",".join(LOG_FIELDS) + "\n")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out))
        except ImportError:
            pass

    def write(self, step: int, row: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(",".join(str(row.get(k, "")) if k != "step" else str(step) for k in LOG_FIELDS) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train WDSR on a folder of images",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="YAML file with TrainConfig keys (flags override it)")
    for field in dataclasses.fields(TrainConfig):
        if field.name in ("model", "milestones"):
            continue
        kind = {"int": int, "float": float}.get(str(field.type).split("[")[-1].rstrip("]"), str)
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=kind, default=None)
    parser.add_argument("--milestones", type=lambda s: [int(v) for v in s.split(",")], help="e.g. 200000,250000")
    parser.add_argument("--model", type=json.loads, help='WDSR overrides as JSON, e.g. \'{"n_resblocks": 8}\'')
    parser.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    try:
        cfg = load_config(args.config, overrides)
        final = Run(cfg, resume=args.resume).run()
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {cfg.steps} steps; weights in {final}")
    return 0
