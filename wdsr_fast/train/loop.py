"""Training on the reference path.

The paper's recipe is the default: L1 loss (on [0, 1]-scaled images), Adam with lr 1e-3 (weight norm allows
it), batch 16 of 48x48 LR patches, the lr multiplied by ``gamma`` (0.2) at 2/3 and 5/6 of the steps (the
authors' 20 and 25 of 30 epochs), fp32. Options: an EMA of the weights, autocast (bf16, or fp16 with a gradient
scaler), validation on a held-out folder, fine-tuning from any checkpoint ``load_model`` reads (``init``).

A run lives in its folder ``--out``, and an existing run is never overwritten: a folder that holds one is
refused unless ``--resume`` continues it.
- ``train_state.pt``: everything needed to continue exactly (model, optimiser, scheduler, EMA, gradient scaler,
  step, best validation score, RNG), written every ``checkpoint_every`` steps and when the run is interrupted
  (Ctrl-C, SIGTERM); ``train_state.prev.pt``: the checkpoint before it. Each is written whole to a temporary
  file, flushed to disk and renamed, so a crash at any moment leaves ``train_state.pt`` readable, and
  ``train_state.prev.pt`` is there should the newest be damaged later (``--resume train_state.prev.pt``).
- ``log.csv`` (loss, lr, validation PSNR-Y/SSIM-Y) and ``events.log`` (start, resume, skipped images, new
  best, interruption), both appended to on resume; TensorBoard events if tensorboard is installed.
- ``model.safetensors`` at the end and ``best.safetensors`` at the best validation PSNR-Y so far (the EMA
  weights when EMA is on).

Nothing is lost, nothing is silent. Every option is checked before anything is created. A run stops at the first
loss or gradient that is not finite (a diverged run; with the fp16 gradient scaler, which skips such steps, at
a non-finite loss), before the optimiser step, naming the step and its last checkpoint; no file with a NaN or an
infinity is ever written. A file that cannot be written (a full disk) stops the run with one line naming it, the
checkpoint before it intact. ``--resume`` refuses options that would change the run's course (``COURSE`` in
``config``), drops the ``log.csv`` rows a killed process wrote after the checkpoint it continues from, and
removes the temporary files killed processes left.

Every training (and validation) image is decoded and checked once at start-up (readable, 8 bits per channel,
sizes); one report names every unusable file, which is then skipped (``--strict``: an error). An image that
fails to load later is skipped, its patches taken from the next image, and named in ``events.log``.
``--resume`` continues exactly where the state file left off: patches are a pure function of (seed, epoch,
index), so the resumed run sees the batches the uninterrupted one would have.

Under ``torchrun --nproc_per_node N`` the same command trains with DistributedDataParallel and a
DistributedSampler (gloo on CPU, nccl on GPU); the global batch stays ``batch``; rank 0 writes the files.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import signal
import statistics
import sys
import threading
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..io.atomic import write_text
from ..model import WDSR, load_model, save_model
from .config import AUTOCAST_DTYPES, LOSSES, TrainConfig, course_changes, fine_tune_config, transferable_weights
from .data import PatchDataset, find_pairs, split_usable
from .state import (
    PREVIOUS_STATE_FILE,
    RUN_FILES,
    STATE_FILE,
    TrainingDiverged,
    check_writable,
    free_name,
    nonfinite,
    previous_hint,
    read_state,
    remove_run_leftovers,
    write_state,
    writing,
)

LOG_FIELDS = ("step", "loss", "lr", "val_psnr_y", "val_ssim_y")


def lr_schedule(optimizer, warmup: int, milestones: list[int], gamma: float):
    """The lr times gamma at each milestone, after a linear rise over the first ``warmup`` steps (if any).
    Without a warm-up it is a plain MultiStepLR, whose state the checkpoints of earlier runs hold."""
    steps = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma)
    if not warmup:
        return steps
    rise = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup - 1)
    return torch.optim.lr_scheduler.ChainedScheduler([rise, steps], optimizer)


class Trainer:
    """One training process (one rank under torchrun).

    ``resume``: False for a new run (``cfg.out`` must not hold one), True to continue from
    ``cfg.out/train_state.pt``, or the path of a state file to continue from (e.g. ``train_state.prev.pt``)."""

    def __init__(self, cfg: TrainConfig, resume: bool | str | Path = False):
        cfg.check()
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.notes: list[str] = []  # start-up messages, written to events.log by fit()
        self.set_aside: tuple[Path, Path] | None = None  # (train_state.pt, its new name) when continuing from another
        # state file
        self.step = 0
        self.best_psnr_y = None
        self.skipped: set[str] = set()
        self.stop_signal = None
        self._join_processes()
        check_writable(self.out)
        state_path, state = self._state_to_resume(resume)
        if state_path is not None and state is not None:
            self._check_course(state, state_path)
        torch.manual_seed(cfg.seed)
        self._build_model(fresh=state is None)
        self._build_optimisation()
        self._build_data()
        if state_path is not None and state is not None:
            self._load(state, state_path)
        self.saved_step = self.step
        self.checkpoint = state_path  # the state file holding step saved_step (None before the first)
        self.resumed_at = self.step if state is not None else None
        if self.world > 1:
            torch.distributed.barrier()  # every rank has checked the folder before rank 0 writes into it

    def _join_processes(self) -> None:
        """This process's rank and device; under torchrun, the process group."""
        cfg = self.cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if cfg.device == "cuda" else "gloo")
        if torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {cfg.device}: no CUDA device is available here (try --device cpu)")
        if cfg.batch % self.world:
            raise ValueError(f"batch {cfg.batch} is not divisible by the {self.world} processes")
        self.device = (torch.device(cfg.device, int(os.environ.get("LOCAL_RANK", 0))) if cfg.device == "cuda"
                       else torch.device(cfg.device))

    def _build_model(self, fresh: bool) -> None:
        """The network, from ``--init``'s weights where given (unless a state file will replace them)."""
        cfg = self.cfg
        model_config = cfg.model_config()
        start = None
        if cfg.init:
            start = load_model(cfg.init)
            model_config = fine_tune_config(start.config, model_config, cfg.init)
        self.model = WDSR.from_config(model_config)
        if start is not None and fresh:
            weights = transferable_weights(start, self.model)
            self.model.load_state_dict(weights, strict=False)
            new = sorted({name.split(".")[0] for name in self.model.state_dict() if name not in weights})
            self.notes.append(f"started from {cfg.init}" + (f" (fresh: {', '.join(new)})" if new else ""))
        self.model.to(self.device)
        self.net: torch.nn.Module = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)

    def _build_optimisation(self) -> None:
        """Adam, the lr schedule, the EMA of the weights and the gradient scaler."""
        cfg = self.cfg
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        milestones = cfg.milestones or [cfg.steps * 2 // 3, cfg.steps * 5 // 6]
        self.scheduler = lr_schedule(self.optimizer, cfg.warmup, milestones, cfg.gamma)
        self.ema = None
        if cfg.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema))
        self.autocast_dtype = AUTOCAST_DTYPES.get(cfg.autocast) if cfg.autocast else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)

    def _build_data(self) -> None:
        """The usable training and validation pairs, the patch dataset and its sampler."""
        cfg = self.cfg
        pairs = self._usable(find_pairs(cfg.data, cfg.scale), cfg.patch, f"training images in {cfg.data}")
        self.val_pairs = (self._usable(find_pairs(cfg.val_data, cfg.scale), None, f"validation images in "
                                       f"{cfg.val_data}") if cfg.val_data else [])
        self.dataset = PatchDataset(pairs, cfg.scale, cfg.patch, cfg.patches_per_image,
                                    self.model.config.rgb_range, seed=cfg.seed)
        self.steps_per_epoch = len(self.dataset) // cfg.batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.dataset)} patches per epoch is less than one batch of {cfg.batch}")
        self.sampler: DistributedSampler = DistributedSampler(self.dataset, self.world, self.rank, shuffle=True,
                                                              seed=cfg.seed, drop_last=True)

    def _state_to_resume(self, resume) -> tuple[Path | None, dict | None]:
        """(the state file to continue from, its contents), or (None, None) for a new run; errors for a folder
        that holds a run without ``resume``, and for a missing or damaged state file."""
        state_path = self.out / STATE_FILE
        held = [name for name in RUN_FILES if (self.out / name).exists()]
        checkpointed = state_path.exists() or (self.out / PREVIOUS_STATE_FILE).exists()
        if not resume:
            if held:
                raise ValueError(f"{self.out} already holds a training run ({', '.join(held)}); "
                                 + ("continue it with --resume, or choose another --out" if checkpointed else
                                    "it stopped before its first checkpoint: choose another --out, or remove them"))
            return None, None
        if resume is True:
            if not state_path.is_file():
                raise ValueError(f"--resume: {self.out} holds no {STATE_FILE} to continue; "
                                 + (previous_hint(self.out) if checkpointed else
                                    f"the run there ({', '.join(held)}) stopped before its first checkpoint: start "
                                    f"a new one in another --out" if held else "start without --resume for a new run"))
            try:
                return state_path, read_state(state_path)
            except ValueError as exc:
                raise ValueError(f"{exc}; {previous_hint(self.out)}") from None
        chosen = Path(resume)
        if not chosen.is_file():
            raise ValueError(f"--resume {chosen}: no such state file")
        if state_path.exists() and chosen.resolve() != state_path.resolve():
            self.set_aside = (state_path, free_name(state_path))
        return chosen, read_state(chosen)

    def _check_course(self, state: dict, path: Path) -> None:
        """An error naming each option that would change the course of the run continued from ``state``; notes
        for the changes it takes (more steps, other folders)."""
        saved = state.get("train_config")
        if not isinstance(saved, dict):
            self.notes.append(f"{path} holds no options to compare (an old state file): the run goes on with these")
            return
        changes = course_changes(saved, self.cfg)
        if changes:
            raise ValueError(f"--resume: {path} was trained with {'; '.join(changes)}: a continued run keeps these "
                             f"options (drop them, or start a new run in another --out, e.g. with --init {path} "
                             f"to start from its weights)")
        if saved.get("steps", self.cfg.steps) != self.cfg.steps:
            milestones = saved.get("milestones") or [saved["steps"] * 2 // 3, saved["steps"] * 5 // 6]
            self.notes.append(f"continuing to step {self.cfg.steps}, not {saved['steps']}; the lr milestones stay "
                              f"at steps {', '.join(map(str, milestones))}")
        for name in ("data", "val_data"):
            if saved.get(name, getattr(self.cfg, name)) != getattr(self.cfg, name):
                self.notes.append(f"--{name.replace('_', '-')} is now {getattr(self.cfg, name)} (the run was "
                                  f"trained on {saved[name]})")

    def _usable(self, pairs: list, patch: int | None, what: str) -> list:
        """The pairs that pass the start-up check; the others are reported (and, with --strict, an error)."""
        usable, reasons = split_usable(pairs, self.cfg.scale, patch)
        if reasons:
            report = f"{len(reasons)} of the {len(pairs)} {what} cannot be used:\n" + "\n".join(f"  {r}"
                                                                                                for r in reasons)
            if self.cfg.strict or not usable:
                raise ValueError(report + ("\n(--strict: fix or remove them)" if usable else ""))
            self.notes.append(report + "\nthey are skipped")
        return usable

    # -- state ----------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.model.state_dict(), "config": self.model.config.to_dict(),
                "train_config": dataclasses.asdict(self.cfg), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step,
                "ema": self.ema.state_dict() if self.ema is not None else None, "rng": torch.get_rng_state(),
                "scaler": self.scaler.state_dict(), "best_val_psnr_y": self.best_psnr_y}

    def save_state(self) -> None:
        """Write the checkpoint (rank 0); a TrainingDiverged error instead if it holds a NaN or an infinity, and a
        RunWriteError if it cannot be written, the checkpoint before it left as it was."""
        if self.rank == 0:
            state = self.state()
            bad = nonfinite({key: state[key] for key in ("model", "ema", "optimizer")})
            if bad is not None:
                raise TrainingDiverged(f"training diverged by step {self.step}: {bad} is not finite; "
                                       f"{self._last_good()}")
            with writing(self.out / STATE_FILE, self._last_checkpoint()):
                write_state(state, self.out)
        self.saved_step = self.step
        self.checkpoint = self.out / STATE_FILE

    def _last_checkpoint(self) -> str:
        """Where the run can continue from, for a message."""
        if self.checkpoint is None:
            first = min(self.cfg.checkpoint_every, self.cfg.steps)
            return f"no checkpoint of the run was written yet (the first is due at step {first})"
        resume = "--resume" if self.checkpoint == self.out / STATE_FILE else f"--resume {self.checkpoint}"
        return f"the last checkpoint, {self.checkpoint} (step {self.saved_step}), is intact: {resume} continues it"

    def _last_good(self) -> str:
        """What is kept of a diverged run and how to go on, for a message."""
        advice = "try a lower --lr (or a --warmup) in a new --out"
        if self.checkpoint is None:
            return f"no checkpoint was written before it; {advice}"
        return (f"nothing after step {self.saved_step} was saved: the last good checkpoint is {self.checkpoint} "
                f"(step {self.saved_step}); {advice} (--init {self.checkpoint} starts from its weights)")

    def _write_model(self, path: Path) -> None:
        """The weights the run saves (the EMA weights when EMA is on) to ``path``, unless they are not finite."""
        model = self.final_model()
        bad = nonfinite(model.state_dict())
        if bad is not None:
            raise TrainingDiverged(f"training diverged by step {self.step}: the weight {bad} is not finite; "
                                   f"{path.name} was not written; {self._last_good()}")
        with writing(path, self._last_checkpoint()):
            save_model(model, path)

    def _load(self, state: dict, path: Path) -> None:
        if state["config"] != self.model.config.to_dict():
            raise ValueError(f"--resume: {path} holds a different model ({state['config']})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best_psnr_y = state.get("best_val_psnr_y")
        torch.set_rng_state(state["rng"].cpu())
        self.step = state["step"]
        self.notes.append(f"resumed at step {self.step} from {path}")

    # -- loop -----------------------------------------------------------------------------------------
    def batches(self):
        """(lr, hr, skipped) batches from the current step on, across epochs."""
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
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            loss = LOSSES[self.cfg.loss](self.net(lr.to(self.device)) / range_, hr.to(self.device) / range_)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        value = self._finite_loss(loss)  # before the optimiser step: the weights stay those of the last good step
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return value

    def _finite_loss(self, loss: torch.Tensor) -> float:
        """The loss's value; a TrainingDiverged error if it, or a gradient, is not finite on any process. With
        the fp16 gradient scaler, whose job it is to skip steps with infinite gradients, only the loss counts."""
        loss = loss.detach().float()
        finite = torch.isfinite(loss)
        grads = [] if self.scaler.is_enabled() else [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads:
            finite = finite & torch.stack([torch.isfinite(g).all() for g in grads]).all()
        if self.world > 1:  # every process stops at the same step
            flag = finite.to(torch.int32)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = flag.bool()
        value, ok = torch.stack([loss, finite.to(loss.dtype)]).tolist()
        if ok:
            return value
        if not math.isfinite(value):
            what = f"the loss is {value}"
        else:
            what = next((f"the gradient of {name} is not finite" for name, p in self.model.named_parameters()
                         if p.grad is not None and not bool(torch.isfinite(p.grad).all())),
                        "another process's loss or gradient is not finite")
        raise TrainingDiverged(f"training diverged at step {self.step + 1}: {what}; {self._last_good()}")

    def final_model(self) -> WDSR:
        model = self.ema.module if self.ema is not None else self.model
        assert isinstance(model, WDSR)
        return model

    def validate(self) -> dict:
        from .evaluation import evaluate

        rows = evaluate(self.final_model(), self.val_pairs, self.cfg.scale, self.device)
        mean = next(r for r in rows if r["image"] == "MEAN" and r["method"] == "wdsr")
        self.model.train()
        return {"val_psnr_y": mean["psnr_y"], "val_ssim_y": mean["ssim_y"]}

    def _note_skipped(self, reasons, log: RunLog) -> None:
        for reason in reasons:
            if reason and reason not in self.skipped:
                if self.cfg.strict:
                    raise ValueError(f"{reason} (--strict)")
                self.skipped.add(reason)
                log.note(f"skipped (its patches come from the next image): {reason}", everywhere=True)

    def _validate_and_keep_best(self, log: RunLog) -> dict:
        row = self.validate()
        if not math.isnan(row["val_psnr_y"]) and (self.best_psnr_y is None or row["val_psnr_y"] > self.best_psnr_y):
            self._write_model(self.out / "best.safetensors")
            self.best_psnr_y = row["val_psnr_y"]
            log.note(f"best.safetensors: validation PSNR-Y {row['val_psnr_y']:.3f} dB, SSIM-Y "
                     f"{row['val_ssim_y']:.4f}")
        return row

    def fit(self) -> Path:
        cfg = self.cfg
        if self.set_aside and self.rank == 0:
            with writing(self.set_aside[1]):
                os.replace(*self.set_aside)
            self.notes.insert(0, f"the newer {self.set_aside[0]} was moved to {self.set_aside[1]}")
        log = RunLog(self.out, enabled=self.rank == 0, resumed_at=self.resumed_at)
        log.note(f"{'continuing' if self.step else 'starting'} x{cfg.scale} training to step {cfg.steps}: "
                 f"{json.dumps(dataclasses.asdict(cfg))}")
        if log.dropped:
            log.note(f"log.csv: dropped {log.dropped} rows written after step {self.step} by a process that stopped "
                     f"without a checkpoint (they are written again)")
        if self.rank == 0:
            leftovers = remove_run_leftovers(self.out)
            if leftovers:
                log.note(f"removed {len(leftovers)} temporary files left by killed processes: "
                         f"{', '.join(p.name for p in leftovers)}")
        for note in self.notes:
            log.note(note)
        losses = []
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training", unit="step", disable=self.rank != 0,
                   file=sys.stderr, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]")
        batches = self.batches()
        try:
            with self._stop_on_signals():
                while self.step < cfg.steps and self.stop_signal is None:
                    try:
                        lr, hr, skipped = next(batches)
                    except Exception:
                        if self.stop_signal is not None:  # a loader worker ended by the same signal
                            break
                        raise
                    self._note_skipped(skipped, log)
                    losses.append(self.train_step(lr, hr))
                    bar.update(1)
                    row: dict[str, float] = {}
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                        row.update(loss=statistics.fmean(losses), lr=self.scheduler.get_last_lr()[0])
                        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2g}")
                        losses = []
                    if self.val_pairs and self.rank == 0 and (self.step % cfg.val_every == 0
                                                              or self.step == cfg.steps):
                        row.update(self._validate_and_keep_best(log))
                    if row:
                        log.write(self.step, row)
                    if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                        self.save_state()
            if self.stop_signal is not None:
                if self.step > self.saved_step:
                    self.save_state()
                log.note(f"stopped by {self.stop_signal} at step {self.step}; the state is saved: continue with "
                         f"--resume")
                raise KeyboardInterrupt
        except TrainingDiverged as exc:
            log.note(str(exc), echo=False)  # the caller reports it
            raise
        finally:
            batches.close()  # ends the loader's worker processes now
            bar.close()
            log.close()
        final = self.out / "model.safetensors"
        if self.rank == 0:
            self._write_model(final)
        if self.world > 1:
            torch.distributed.barrier()
        return final

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """Within: SIGINT and SIGTERM end the loop after the current step (a second SIGINT stops at once)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum, frame):
            if self.stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_signal = signal.Signals(signum).name

        handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


class RunLog:
    """log.csv (a row every log_every steps), events.log (notes) and TensorBoard events if available; on
    rank 0, appended to on resume (``resumed_at``: the step continued from), the rows after that step, which a
    killed process wrote, dropped (``dropped``: how many). Notes also go to stderr. A file that cannot be written
    is a RunWriteError naming it."""

    def __init__(self, out: Path, enabled: bool, resumed_at: int | None = None):
        self.enabled = enabled
        self.writer = None
        self.dropped = 0
        if not enabled:
            return
        self.path, self.events = out / "log.csv", out / "events.log"
        with writing(out):
            out.mkdir(parents=True, exist_ok=True)
        with writing(self.path):
            if not self.path.exists() or not self.path.read_text().strip():
                self.path.write_text(",".join(LOG_FIELDS) + "\n")
            elif resumed_at is not None:
                self.dropped = self._keep_through(resumed_at)
        with writing(self.events):
            if self.events.exists() and self.events.stat().st_size:
                with self.events.open("rb+") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")  # a line cut short by a killed process stays apart from the next
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out), purge_step=None if resumed_at is None else resumed_at + 1)
        except ImportError:
            pass

    def _keep_through(self, step: int) -> int:
        """Drop the rows of log.csv after ``step``, and a last row cut short; returns how many were dropped."""
        lines = self.path.read_text().splitlines(keepends=True)

        def after(line: str) -> bool:
            try:
                return int(line.split(",", 1)[0]) > step
            except ValueError:
                return False  # the header, or a row this version did not write: kept

        kept = [line for line in lines if line.endswith("\n") and not after(line)]
        if len(kept) != len(lines):
            write_text(self.path, "".join(kept))
        return len(lines) - len(kept)

    def write(self, step: int, row: dict) -> None:
        if not self.enabled:
            return
        with writing(self.path), self.path.open("a") as f:
            f.write(",".join(str(row.get(k, "")) if k != "step" else str(step) for k in LOG_FIELDS) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                self.writer.add_scalar(key, value, step)

    def note(self, message: str, everywhere: bool = False, echo: bool = True) -> None:
        """``message`` to stderr (on every rank if ``everywhere``; not at all without ``echo``) and to
        events.log."""
        if not (self.enabled or everywhere):
            return
        if echo:
            tqdm.write(message, file=sys.stderr)
        if self.enabled:
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            with writing(self.events), self.events.open("a") as f:
                f.write(f"{stamp} {message}\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
