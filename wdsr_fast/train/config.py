"""The options of a training run (``TrainConfig``): each field with its help text, read from a YAML file and
flags, and checked before anything is written."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path

import torch
from torch.nn import functional as F

from ..model import PRESETS, SCALES, WDSR, WDSRConfig

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
    lr: float = option(1e-3, "Adam learning rate (positive); a run whose loss or gradients stop being finite "
                             "stops, its last checkpoint kept")
    warmup: int = option(0, "steps over which the lr rises linearly from lr/warmup to lr (0: none), e.g. for a "
                            "fine-tune from trained weights (--init), whose optimiser starts afresh")
    milestones: list[int] | None = option(None, "comma-separated steps at which the lr is multiplied by --gamma",
                                          shown="2/3 and 5/6 of --steps")
    gamma: float = option(0.2, "lr factor at each milestone (positive)")
    ema: float = option(0.0, "decay of an exponential moving average of the weights, which are then the ones saved "
                             "(0: off; below 1), e.g. 0.999")
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

    def check(self) -> None:
        """A one-line ValueError naming the first option with a value that cannot run (a wrong type, out of
        range, an unknown name); run before anything is created, so that a corrected retry is never refused."""
        for field in dataclasses.fields(self):
            value, kinds = getattr(self, field.name), FIELD_KINDS[str(field.type)]
            if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
                raise ValueError(f"{_flag(field.name)} must be {FIELD_KIND_NAMES[str(field.type)]}, got "
                                 f"{_kind(value)}")
        if not self.data:
            raise ValueError("no training data: give --data DIR (or `data:` in the config file)")
        if not self.out:
            raise ValueError("--out must name the run's folder")
        for name in ("patch", "batch", "steps", "patches_per_image", "log_every", "val_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup", "workers", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{_flag(name)} must be 0 or more, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"--gamma must be a positive number (the lr factor at each milestone), got {self.gamma}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"--ema must be at least 0 (off) and below 1, got {self.ema}")
        if self.milestones is not None and not all(isinstance(step, int) and not isinstance(step, bool) and step >= 1
                                                   for step in self.milestones):
            raise ValueError(f"--milestones must be steps of 1 or more, got {self.milestones}")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"--autocast must be one of {sorted(AUTOCAST_DTYPES)} (or unset for fp32), got "
                             f"{self.autocast!r}")
        try:
            torch.device(self.device)
        except RuntimeError:
            raise ValueError(f"--device must be cpu or cuda, got {self.device!r}") from None
        if self.scale not in SCALES:
            raise ValueError(f"--scale must be one of {', '.join(map(str, SCALES))}, got {self.scale}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        known = sorted(f.name for f in dataclasses.fields(WDSRConfig) if f.name != "scale")
        unknown = sorted(map(str, set(self.model) - set(known)))
        if unknown:
            raise ValueError(f"--model: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
                             f"{' (give --scale instead)' if unknown == ['scale'] else ''}; the known keys: "
                             f"{', '.join(known)}")
        try:
            self.model_config()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--model {json.dumps(self.model)}: {exc}") from None


# The types a TrainConfig field takes, by its annotation, and how an error names them.
FIELD_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,), "str | None": (str, type(None)), "int": (int,), "float": (int, float), "bool": (bool,),
    "dict": (dict,), "list[int] | None": (list, type(None))}
FIELD_KIND_NAMES = {"str": "text", "str | None": "text (or unset)", "int": "a whole number", "float": "a number",
                    "bool": "true or false", "dict": "a JSON object (a mapping of WDSR keyword overrides, e.g. "
                                                     '{"n_resblocks": 8})',
                    "list[int] | None": "steps separated by commas, e.g. 4000,5000 (or unset)"}


def load_config(path: Path | None, overrides: dict) -> TrainConfig:
    """The options of a run: the YAML file ``path`` (if any), overridden by ``overrides`` (None values ignored),
    checked (``TrainConfig.check``). Every problem is a one-line ValueError naming the file or the option."""
    values: dict = read_config_file(Path(path)) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    for field in dataclasses.fields(TrainConfig):  # what a YAML file or a flag spells as text
        value = values.get(field.name)
        if isinstance(value, str) and field.type == "float":
            with contextlib.suppress(ValueError):
                values[field.name] = float(value)  # YAML reads 1e-3 (no dot) as a string
        elif isinstance(value, str) and field.name == "milestones":
            with contextlib.suppress(ValueError):
                values[field.name] = [int(v) for v in value.split(",")]
        elif isinstance(value, str) and field.name == "model":
            try:
                values[field.name] = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"--model {value}: not valid JSON ({exc})") from None
    cfg = TrainConfig(**values)
    cfg.check()
    return cfg


def read_config_file(path: Path) -> dict:
    """The options in the YAML file ``path``; a one-line ValueError naming the file (and the line) for a missing
    or unreadable file, malformed YAML, anything but a mapping, and unknown keys."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"--config {path}: cannot be read ({reason})") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None) or str(exc)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
            problem += f" ({context} at line {context_mark.line + 1})"
        raise ValueError(f"--config {path}: {where}not valid YAML: {' '.join(str(problem).split())}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: expected a mapping of options (one `name: value` a line), got "
                         f"{_kind(values)}")
    unknown = sorted(map(str, set(values) - {f.name for f in dataclasses.fields(TrainConfig)}))
    if unknown:
        raise ValueError(f"--config {path}: unknown keys {unknown}; the options are "
                         f"{', '.join(f.name for f in dataclasses.fields(TrainConfig))}")
    return values


def _kind(value) -> str:
    """What a value from JSON or YAML is, in words."""
    kinds = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number",
             type(None): "nothing"}
    return f"{kinds.get(type(value), type(value).__name__)} ({value!r})"


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


# The options that set a run's course (the weights it arrives at): a continued run (--resume) keeps the saved
# ones. The architecture (--preset, --scale, --model, --init) is checked as the model itself; the others (--steps,
# to extend a run, the intervals, --workers, --device, --strict, the folders) may change.
COURSE = ("patch", "batch", "patches_per_image", "loss", "lr", "warmup", "milestones", "gamma", "ema", "autocast",
          "seed")


def course_changes(saved: dict, cfg: TrainConfig) -> list[str]:
    """The options in ``COURSE`` on which ``cfg`` differs from ``saved`` (a run's stored ``train_config``; an
    option it lacks, from before the option existed, counts as its default), each as "--lr 0.01, not 0.001"."""
    def shown(value) -> str:
        if value is None:
            return "unset"
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)

    defaults = TrainConfig()
    changes = []
    for name in COURSE:
        before, now = saved.get(name, getattr(defaults, name)), getattr(cfg, name)
        if before != now:
            changes.append(f"{_flag(name)} {shown(before)}, not {shown(now)}")
    return changes


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
