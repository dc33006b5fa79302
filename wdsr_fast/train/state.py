"""The files of a training run: the state to continue from exactly (``train_state.pt``, the one before it kept as
``train_state.prev.pt``), written whole at every moment; where a run can be written, and what stops one (a
diverged run, a file that cannot be written)."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from ..io.atomic import atomic_path, remove_leftovers
from ..model import WDSR, WDSRConfig

STATE_FILE = "train_state.pt"
PREVIOUS_STATE_FILE = "train_state.prev.pt"
RUN_FILES = (STATE_FILE, PREVIOUS_STATE_FILE, "log.csv", "events.log", "model.safetensors", "best.safetensors")
STATE_KEYS = ("model", "config", "optimizer", "scheduler", "step", "rng")


def read_state(path: Path) -> dict:
    """A training state file's contents, or a ValueError naming the file and what is wrong with it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or damaged files raise EOFError, RuntimeError, UnpicklingError, ...
        if path.is_file() and path.stat().st_size == 0:
            raise ValueError(f"{path}: damaged training state (an empty file)") from None
        detail = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"{path}: damaged training state ({type(exc).__name__}"
                         f"{': ' + detail if detail else ''})") from None
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(f"{path}: not a training state (no {', '.join(missing)})")
    return state


def write_state(state: dict, out: Path) -> None:
    """Write OUT/train_state.pt, keeping the file it replaces as OUT/train_state.prev.pt. The new state is
    flushed to disk before it is renamed into place, so train_state.pt is whole at every moment."""
    path, previous = out / STATE_FILE, out / PREVIOUS_STATE_FILE
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            with atomic_path(previous) as previous_tmp:
                os.remove(previous_tmp)
                try:
                    os.link(path, previous_tmp)
                except OSError:  # a file system without hard links
                    shutil.copyfile(path, previous_tmp)


def model_from_state(path: Path) -> WDSR:
    """The weights a run saves (the EMA weights when EMA is on), from one of its state files."""
    state = read_state(Path(path))
    model = WDSR.from_config(WDSRConfig.from_dict(state["config"]))
    if state.get("ema"):
        prefix = "module."
        model.load_state_dict({k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)})
    else:
        model.load_state_dict(state["model"])
    return model.eval()


def free_name(path: Path) -> Path:
    """``path`` with the first of .1, .2, ... appended that names no file yet."""
    n = 1
    while path.with_name(f"{path.name}.{n}").exists():
        n += 1
    return path.with_name(f"{path.name}.{n}")


def previous_hint(out: Path) -> str:
    """How to continue from OUT/train_state.prev.pt, or that it cannot be."""
    previous = out / PREVIOUS_STATE_FILE
    if not previous.is_file():
        return f"no previous checkpoint ({PREVIOUS_STATE_FILE}) is there"
    try:
        step = read_state(previous)["step"]
    except ValueError as exc:
        return f"the previous checkpoint is damaged too ({exc})"
    return f"the previous checkpoint (step {step}) can continue the run: --resume {previous}"


class TrainingDiverged(ValueError):
    """The loss, a gradient or the weights stopped being finite; nothing non-finite was written."""


class RunWriteError(OSError):
    """A file of the run could not be written (a full disk, a folder made read-only); the message is one line
    naming the file, the reason and the checkpoint the run can continue from."""


@contextlib.contextmanager
def writing(path: Path, after: str = "") -> Iterator[None]:
    """Within: an OSError becomes a RunWriteError naming ``path`` (not a hidden temporary file) and the reason,
    followed by ``after``."""
    try:
        yield
    except RunWriteError:
        raise
    except OSError as exc:
        raise RunWriteError(f"cannot write {path}: {exc.strerror or exc}{'; ' + after if after else ''}") from None


def check_writable(out: Path) -> None:
    """A ValueError naming ``out`` and the reason if a run cannot be written there (a file in the way, a folder
    without write permission, a read-only file system); nothing is created."""
    folder = out
    while not folder.exists() and not folder.is_symlink() and folder.parent != folder:
        folder = folder.parent
    where = "" if folder == out else f" ({folder} is the nearest folder that exists)"
    if not folder.is_dir():
        raise ValueError(f"cannot write the run into {out}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = False
        with contextlib.suppress(OSError):
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        reason = os.strerror(errno.EROFS if read_only else errno.EACCES)
        raise ValueError(f"cannot write the run into {out}: {reason}{where}")


def remove_run_leftovers(out: Path) -> list[Path]:
    """The temporary files of the run's files that killed processes left behind, removed (never one a live
    process is writing)."""
    return [leftover for name in RUN_FILES for leftover in remove_leftovers(out / name)]


def nonfinite(tree, name: str = "") -> str | None:
    """The name (``model``, ``optimizer``, ...) of the first floating-point tensor in ``tree`` (a tensor or nested
    dicts, lists and tuples of them) that holds a NaN or an infinity; None if there is none."""
    if isinstance(tree, torch.Tensor):
        return name if tree.is_floating_point() and not bool(torch.isfinite(tree).all()) else None
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    for key, value in items:
        found = nonfinite(value, f"{name}.{key}" if name else str(key))
        if found is not None:
            return found
    return None
