"""Checkpoints: ``load_model(path)`` and ``save_model(model, path)``.

What loads:
- our files: ``.safetensors`` (config as JSON in the metadata) and ``.pth``/``.pt`` (``{"config", "state_dict"}``);
- bare state_dicts, or ones wrapped under ``state_dict``, ``model``, ``model_state_dict``, ``params`` or
  ``params_ema``, with or without a ``module.`` prefix;
- the authors' layouts: JiahuiYu/wdsr_ntire2018 (our native ``head/body/tail/skip`` keys) and ychfan/wdsr
  (``body.0`` head, ``body.1..n`` blocks, ``body.n+1`` tail, ``skip.0``; its pretrained ``epoch_30.pth``
  files), with either weight-norm API (``weight_g``/``weight_v`` or ``parametrizations.weight.original0/1``)
  or plain ``weight`` tensors (the key mapping itself is ``key_layouts.py``).
Where no config is stored it is inferred from the tensor shapes. The format is read from the file's first bytes,
whatever its suffix; a file of neither kind is "not a checkpoint". Pickled files are read with
``torch.load(weights_only=True)``: tensors, numbers, strings and containers only; a file holding any other object
is refused for safety, naming the object.
"""
from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import torch

from ..io.atomic import atomic_path
from .config import WDSRConfig
from .key_layouts import translate_state_dict
from .network import WDSR
from .presets import PRESETS

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "params_ema", "params")
YCHFAN_NORMALISATION = {k: PRESETS["ychfan-small"][k] for k in ("rgb_range", "rgb_mean", "norm_scale")}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded, with the file and the reason."""


# -- config inference -----------------------------------------------------------------------------

def infer_config(state: dict[str, torch.Tensor], ychfan: bool = False) -> WDSRConfig:
    """The WDSRConfig a (translated) state_dict was made with, from its tensor shapes."""
    try:
        head = state["head.0.weight_v"]
        tail = state["tail.0.weight_v"]
        n_feats = head.shape[0]
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.body\.", k))}
        n_resblocks = len(blocks)
        scale = round((tail.shape[0] / 3) ** 0.5)
        kwargs = dict(scale=scale, n_feats=n_feats, n_resblocks=n_resblocks)
        if "body.0.body.3.weight_v" in state:  # WDSR-B: 1x1, 1x1, 3x3
            wide = state["body.0.body.0.weight_v"].shape[0]
            low_rank_width = state["body.0.body.2.weight_v"].shape[0]
            kwargs.update(variant="b", expansion=wide // n_feats, low_rank=_low_rank_ratio(n_feats, low_rank_width))
        else:
            kwargs.update(variant="a", block_feats=state["body.0.body.0.weight_v"].shape[0])
    except (KeyError, IndexError) as exc:
        raise ValueError(f"cannot infer the WDSR configuration: missing or malformed tensor {exc}") from None
    if ychfan:
        kwargs.update(YCHFAN_NORMALISATION)
    return WDSRConfig(**kwargs)


def _low_rank_ratio(n_feats: int, width: int) -> float:
    """A ratio r with int(n_feats * r) == width, 0.8 when that fits (the authors' constant)."""
    if int(n_feats * 0.8) == width:
        return 0.8
    return (width + 0.5) / n_feats


def describe_mismatch(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], limit: int = 4) -> str:
    """What differs between a model's state_dict and a (translated) checkpoint; "" when they fit."""
    def shape(t):
        return list(t.shape)

    problems = [f"{k} has shape {shape(state[k])}, the config expects {shape(v)}"
                for k, v in expected.items() if k in state and state[k].shape != v.shape]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
            problems.append(f"{label} tensors {', '.join(keys[:limit])}{more}")
    return "; ".join(problems[:limit] + ([f"and {len(problems) - limit} more"] if len(problems) > limit else []))


# -- files ----------------------------------------------------------------------------------------

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's file (a zip archive)
PICKLE_PROTOCOLS = range(2, 6)  # torch.save's older file (_use_new_zipfile_serialization=False): a bare pickle
SAFETENSORS_SIGN = b"{"  # after the 8-byte header length: the JSON header


def file_kind(path: Path) -> str | None:
    """``"torch"`` or ``"safetensors"`` from the file's first bytes (whatever its suffix); None for neither."""
    with open(path, "rb") as f:
        head = f.read(9)
        size = os.fstat(f.fileno()).st_size
    if head.startswith(ZIP_MAGIC) or (head[:1] == b"\x80" and len(head) > 1 and head[1] in PICKLE_PROTOCOLS):
        return "torch"
    if len(head) == 9 and head[8:] == SAFETENSORS_SIGN and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    return None


def _read(path: Path, map_location) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state_dict as stored, stored config or None); CheckpointError for a file that is no checkpoint or holds
    objects other than tensors."""
    kind = file_kind(path)
    if kind is None:
        raise CheckpointError(f"{path}: not a checkpoint (neither a PyTorch file nor safetensors"
                              f"{'; the file is empty' if path.stat().st_size == 0 else ''})")
    if kind == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        config = json.loads(metadata["config"]) if "config" in metadata else None
        return {k: v.to(map_location) for k, v in state.items()}, config
    try:
        obj = torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise
        # torch's message advises loading it unsafely: never repeat that; name the object instead.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise CheckpointError(f"{path}: holds objects other than tensors{f' ({found.group(1)})' if found else ''}, "
                              f"which are refused for safety (unpickling them could run any code)") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a dict of tensors, found a {type(obj).__name__}")
    config = obj.get("config") if isinstance(obj.get("config"), dict) else None
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"no tensors found (top-level keys: {sorted(map(str, obj))[:8]})")
    return state, config


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")


def load_model(path, map_location="cpu") -> WDSR:
    """A ready reference WDSR (eval mode) from any supported checkpoint file."""
    path = Path(path)
    _check_is_file(path)
    try:
        stored, config = _read(path, map_location)
    except CheckpointError:
        raise
    except Exception as exc:  # truncated or corrupt files raise all sorts of errors
        raise CheckpointError(f"{path}: cannot read the checkpoint ({_reason(exc)})") from None
    try:
        state, ychfan = translate_state_dict(stored)
        cfg = WDSRConfig.from_dict(config) if config is not None else infer_config(state, ychfan)
        model = WDSR.from_config(cfg)
        mismatch = describe_mismatch(model.state_dict(), state)
        if mismatch:
            raise ValueError(f"the weights do not fit the configuration (WDSR-{cfg.variant.upper()} x{cfg.scale}, "
                             f"n_feats {cfg.n_feats}, {cfg.n_resblocks} blocks): {mismatch}")
        model.load_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return model.to(map_location).eval()


def save_model(model: WDSR, path) -> Path:
    """Write ``model``'s config and weights atomically; the format follows the suffix (.safetensors, .pth, .pt)."""
    path = Path(path)
    if path.suffix not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"{path}: unknown checkpoint format {path.suffix!r}; use .safetensors, .pth or .pt")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, tmp, metadata={"config": json.dumps(config), "format": "wdsr_fast"})
        else:
            torch.save({"config": config, "state_dict": state}, tmp)
    return path


def read_checkpoint(path, map_location="cpu") -> tuple[dict[str, torch.Tensor], dict | None]:
    """A checkpoint's tensors as stored (wrappers removed, keys untouched) and its stored config (None if the
    file has none): what ``wdsr-fast info`` reports the source layout from. CheckpointError if unreadable."""
    path = Path(path)
    _check_is_file(path)
    try:
        return _read(path, map_location)
    except CheckpointError:
        raise
    except Exception as exc:  # truncated or corrupt files raise all sorts of errors, some over many lines
        raise CheckpointError(f"{path}: cannot read the checkpoint ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = " ".join(next((line for line in str(exc).splitlines() if line.strip()), "").split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
