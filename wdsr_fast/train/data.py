"""Super-resolution image pairs from folders, and random aligned training patches.

Folder layouts (``find_pairs``):
- DIV2K: ``ROOT/*_HR/0001.png`` with ``ROOT/*_LR_bicubic/X{s}/0001x{s}.png`` (or ``ROOT`` itself being the HR
  folder with the LR folder beside it);
- an HR folder plus an explicit LR folder, files matched by name (``0001.png`` or ``0001x{s}.png``);
- HR only: the LR images are made by MATLAB-compatible bicubic ``imresize`` (the HR is first cropped to a
  multiple of the scale), once, and cached.

Training patches are deterministic functions of (seed, epoch, index), so a resumed run sees exactly the
patches the uninterrupted run would have, in any number of worker processes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io.images import IMAGE_SUFFIXES, ImageError, read_rgb, uint8_to_tensor
from .imresize import imresize


@dataclass
class Pair:
    name: str
    hr: Path
    lr: Path | None  # None: made from hr by imresize


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _div2k_lr_folder(hr_folder: Path, scale: int) -> Path | None:
    stem = hr_folder.name[: -len("_HR")] if hr_folder.name.endswith("_HR") else None
    if stem is None:
        return None
    candidate = hr_folder.parent / f"{stem}_LR_bicubic" / f"X{scale}"
    return candidate if candidate.is_dir() else None


def find_pairs(root, scale: int, lr_root=None) -> list[Pair]:
    """The (HR, LR) pairs under ``root`` in any supported layout (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder of images")
    hr_folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith("_HR"))
    hr_folder = hr_folders[0] if len(hr_folders) == 1 else root
    lr_folder = Path(lr_root) if lr_root is not None else _div2k_lr_folder(hr_folder, scale)
    hr_files = _images(hr_folder)
    if not hr_files:
        raise ValueError(f"{hr_folder}: no images found")
    if lr_folder is None:
        return [Pair(p.stem, p, None) for p in hr_files]
    lr_by_name = {p.stem: p for p in _images(lr_folder)}
    pairs = []
    for hr in hr_files:
        lr = lr_by_name.get(f"{hr.stem}x{scale}") or lr_by_name.get(hr.stem)
        if lr is None:
            raise ValueError(f"{hr}: no matching LR image ({hr.stem}x{scale} or {hr.stem}) in {lr_folder}")
        pairs.append(Pair(hr.stem, hr, lr))
    return pairs


def _hr_size_for(pair: Pair, lr_shape: tuple, hr: np.ndarray, scale: int) -> np.ndarray:
    """``hr`` cropped to exactly scale x the LR size, or an ImageError if the two sizes disagree."""
    h, w = lr_shape[0] * scale, lr_shape[1] * scale
    if hr.shape[0] < h or hr.shape[1] < w or hr.shape[0] >= h + scale or hr.shape[1] >= w + scale:
        raise ImageError(f"{pair.hr} is {hr.shape[1]}x{hr.shape[0]} but {pair.lr} is {lr_shape[1]}x{lr_shape[0]}: "
                         f"sizes disagree at x{scale}")
    return hr[:h, :w]


def check_pair(pair: Pair, scale: int, patch: int | None = None) -> None:
    """Raise ImageError if ``pair`` cannot give training patches of ``patch`` LR pixels (or, with ``patch``
    None, cannot be evaluated): unreadable or truncated files, more than 8 bits per channel, sizes that
    disagree, too small. The images are decoded in full, but no LR image is computed."""
    hr = read_rgb(pair.hr)
    if pair.lr is None:
        lr_shape = (hr.shape[0] // scale, hr.shape[1] // scale)
        where = f"{pair.hr} ({hr.shape[1]}x{hr.shape[0]})"
    else:
        lr_shape = read_rgb(pair.lr).shape[:2]
        _hr_size_for(pair, lr_shape, hr, scale)
        where = f"{pair.lr} ({lr_shape[1]}x{lr_shape[0]})"
    if min(lr_shape) < (patch or 1):
        need = f"the {patch}x{patch} patch" if patch else "one pixel"
        raise ImageError(f"{where}: its LR image at x{scale} is {lr_shape[1]}x{lr_shape[0]}, smaller than {need}")


def split_usable(pairs: list[Pair], scale: int, patch: int | None = None) -> tuple[list[Pair], list[str]]:
    """(the pairs ``check_pair`` accepts, one reason for each pair it refuses)."""
    usable, reasons = [], []
    for pair in pairs:
        try:
            check_pair(pair, scale, patch)
            usable.append(pair)
        except ImageError as exc:
            reasons.append(str(exc))
    return usable, reasons


def load_pair(pair: Pair, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(lr, hr) uint8 arrays with hr exactly scale x lr in size."""
    hr = read_rgb(pair.hr)
    if pair.lr is None:
        hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
        if hr.size == 0:
            raise ImageError(f"{pair.hr}: {read_rgb(pair.hr).shape[:2]} is smaller than the scale {scale}")
        return imresize(hr, 1 / scale), hr
    lr = read_rgb(pair.lr)
    return lr, _hr_size_for(pair, lr.shape, hr, scale)


def augment(lr: np.ndarray, hr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 flips/90-degree rotations, the same for both."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    lr, hr = np.rot90(lr, k), np.rot90(hr, k)
    if flip:
        lr, hr = lr[:, ::-1], hr[:, ::-1]
    return lr, hr


class PatchDataset(torch.utils.data.Dataset):
    """Random aligned (LR, HR) patches: ``patches_per_image`` per image and epoch. An item is
    ``(lr, hr, skipped)``: float tensors in [0, rgb_range], LR (3, patch, patch) and HR (3, scale*patch,
    scale*patch), and ``skipped``, the reason an image failed to load for this item ("" if none; the patch then
    comes from the next image that loads, and the failed image is not tried again by this process)."""

    def __init__(self, pairs: list[Pair], scale: int, patch: int = 48, patches_per_image: int = 100,
                 rgb_range: float = 255.0, augment: bool = True, seed: int = 0):
        if not pairs:
            raise ValueError("no training images")
        self.pairs, self.scale, self.patch = pairs, scale, patch
        self.patches_per_image, self.rgb_range, self.augment, self.seed = patches_per_image, rgb_range, augment, seed
        self.epoch = 0
        self._cache: dict[int, tuple] = {}
        self._failed: dict[int, str] = {}  # pair index -> reason

    def __len__(self) -> int:
        return len(self.pairs) * self.patches_per_image

    def _pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._failed:
            raise ImageError(self._failed[i])
        if i not in self._cache:
            try:
                lr, hr = load_pair(self.pairs[i], self.scale)
                if min(lr.shape[:2]) < self.patch:
                    raise ImageError(f"{self.pairs[i].hr}: its LR image {lr.shape[1]}x{lr.shape[0]} is smaller "
                                     f"than the {self.patch}x{self.patch} patch")
            except ImageError as exc:
                self._failed[i] = str(exc)
                raise
            self._cache[i] = (lr, hr)
        return self._cache[i]

    def _first_loadable(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Image ``i``'s arrays, or the next image's that loads, and the first failure's reason ("" if none)."""
        reason = ""
        for j in range(i, i + len(self.pairs)):
            try:
                return (*self._pair(j % len(self.pairs)), reason)
            except ImageError as exc:
                reason = reason or str(exc)
        raise ImageError(f"none of the {len(self.pairs)} training images can be read; the first: {reason}")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        lr, hr, skipped = self._first_loadable(index % len(self.pairs))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        top = int(rng.integers(lr.shape[0] - self.patch + 1))
        left = int(rng.integers(lr.shape[1] - self.patch + 1))
        s, p = self.scale, self.patch
        lr_patch = lr[top:top + p, left:left + p]
        hr_patch = hr[top * s:(top + p) * s, left * s:(left + p) * s]
        if self.augment:
            lr_patch, hr_patch = augment(lr_patch, hr_patch, rng)
        return uint8_to_tensor(lr_patch, self.rgb_range)[0], uint8_to_tensor(hr_patch, self.rgb_range)[0], skipped
