"""``wdsr-fast train``: train WDSR on a folder of images (``wdsr_fast.train``: the recipe, the run folder)."""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from ..model import PRESETS
from ..train.config import AUTOCAST_DTYPES, LOSSES, TrainConfig, load_config
from ..train.loop import Trainer
from ..train.state import PREVIOUS_STATE_FILE, STATE_FILE


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train WDSR on a folder of images",
                                   description="Train WDSR on a folder of images: the paper's recipe by default, "
                                               "checkpointed, resumable exactly, never overwriting a run.",
                                   epilog="Files of a run: train_state.pt (+ train_state.prev.pt), log.csv, "
                                          "events.log, model.safetensors, best.safetensors (with --val-data).")
    parser.add_argument("--config", type=Path,
                        help="YAML file of the options below (underscores: patches_per_image); flags override it "
                             "(default: none)")
    defaults = TrainConfig()
    types = {"int": int, "float": float}
    for field in dataclasses.fields(TrainConfig):
        flag, default = f"--{field.name.replace('_', '-')}", getattr(defaults, field.name)
        shown = field.metadata["shown"] or ("off" if default is False else default)
        help_text = f"{field.metadata['help']} (default: {shown})"
        if field.name == "strict":
            parser.add_argument(flag, dest=field.name, action="store_true", default=None, help=help_text)
        elif field.name in ("milestones", "model"):  # text, read by load_config (so is a YAML file's)
            parser.add_argument(flag, dest=field.name, help=help_text,
                                metavar="STEP,STEP" if field.name == "milestones" else "JSON")
        else:
            choices = {"scale": (2, 3, 4), "preset": sorted(PRESETS), "autocast": sorted(AUTOCAST_DTYPES),
                       "loss": sorted(LOSSES), "device": ("cpu", "cuda")}.get(field.name)
            parser.add_argument(flag, dest=field.name, type=types.get(str(field.type), str), default=None,
                                choices=choices, help=help_text)
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="STATE",
                        help=f"continue the run in --out from its {STATE_FILE}, or from the state file STATE "
                             f"(e.g. OUT/{PREVIOUS_STATE_FILE}) (default: off, a new run)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    try:
        cfg = load_config(args.config, overrides)
        final = Trainer(cfg, resume=args.resume).fit()
    except (ValueError, OSError) as exc:  # the library's errors are one line each
        raise SystemExit(f"error: {exc}") from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {cfg.steps} steps; weights in {final}")
    return 0
