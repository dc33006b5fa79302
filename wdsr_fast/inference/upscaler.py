"""Upscaling whole images of any size, and ``Upscaler``, the entry point for applications.

Tiling: the LR image is cut into tiles of ``tile`` x ``tile`` pixels; each is run with ``tile_pad`` pixels of
real context on every side (clipped at the image border, where the network zero-pads as it would untiled)
and only its own part of the output is kept. With ``tile_pad`` at least the network's receptive radius
(``WDSRConfig.receptive_radius``, the default) every output pixel sees exactly the inputs it sees untiled,
so tiled and untiled outputs agree (to float rounding). The whole LR image and the whole output stay where
they are (host memory for ``Upscaler``); only one tile with its pad is on the device at a time, and each
tile's output is rounded to the output's integer samples on the device before it is copied back.

``tile="auto"`` starts from the largest tile whose activations fit half the free device memory (a quarter of
the free host memory on CPU, at most ``CPU_TILE_LIMIT`` there) and halves it whenever the device runs out of
memory, down to ``MIN_TILE``; the size that worked is kept for the next images. Frames run together (a video's
``--batch``) share that memory and the fused kernels' 32-bit indexing: their tiles are smaller.
"""
from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import ops
from .. import weights as bundled_weights
from ..io.images import ImageError, Picture, picture_from_pil, picture_to_pil, quantize
from ..model import WDSR, check_image
from ..model.checkpoint import load_model
from .fast_wdsr import FastWDSR

ALPHA_MODES = ("bicubic", "wdsr")
MIN_TILE = 16
CPU_TILE_LIMIT = 512
INT32_ELEMENTS = 2**31 - 1  # the fused kernels index a tensor with 32-bit integers
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601: three output channels back to one gray channel


class UpscaleError(RuntimeError):
    """An image that could not be upscaled (out of memory, non-finite output), with the reason."""


@dataclass(frozen=True)
class Window:
    """A tile: output rows/columns [top, bottom) x [left, right) (LR pixels), read from [y0, y1) x [x0, x1)."""
    top: int
    left: int
    bottom: int
    right: int
    y0: int
    x0: int
    y1: int
    x1: int


def tile_windows(height: int, width: int, tile: int, pad: int) -> list[Window]:
    """The tiles covering a height x width image, each with up to ``pad`` pixels of context on every side."""
    windows = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            windows.append(Window(top, left, bottom, right, max(top - pad, 0), max(left - pad, 0),
                                  min(bottom + pad, height), min(right + pad, width)))
    return windows


def run_tiled(process: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, out: torch.Tensor, scale: int,
              tile: int, pad: int, on_tile: Callable[[], None] | None = None) -> torch.Tensor:
    """Fill ``out`` (N, C', sH, sW) with ``process`` applied tile by tile to ``image`` (N, C, H, W).

    ``process`` maps a padded (N, C, h, w) slice of ``image`` to (N, C', s*h, s*w) on any device; only the
    tile's own part of its result is copied into ``out``.
    """
    height, width = image.shape[-2:]
    for w in tile_windows(height, width, tile, pad):
        result = process(image[..., w.y0:w.y1, w.x0:w.x1])
        out[..., w.top * scale:w.bottom * scale, w.left * scale:w.right * scale] = result[
            ..., (w.top - w.y0) * scale:(w.bottom - w.y0) * scale, (w.left - w.x0) * scale:(w.right - w.x0) * scale]
        if on_tile is not None:
            on_tile()
    return out


def upscale_tensor(model, image: torch.Tensor, tile: int | None = None, tile_pad: int | None = None,
                   on_tile: Callable[[], None] | None = None) -> torch.Tensor:
    """model(image), computed tile by tile when ``tile`` is set. image: (N, 3, H, W) -> (N, 3, sH, sW).

    The result is on ``image``'s device; the tiles are moved to the model's device (e.g. a host image and a
    CUDA model: only tiles occupy the GPU).
    """
    check_image(image)
    if tile is not None:
        tile = pixel_count(tile, 1, "tile must be a positive number of pixels")
    pad = model.config.receptive_radius if tile_pad is None else pixel_count(tile_pad, 0, TILE_PAD_RULE)
    height, width = image.shape[-2:]
    scale = model.config.scale
    device = next(model.parameters()).device
    out = image.new_empty(image.shape[0], 3, height * scale, width * scale)
    return run_tiled(lambda lr: model(lr.to(device)), image, out, scale, tile or max(height, width), pad, on_tile)


TILE_PAD_RULE = "tile_pad must be a number of pixels >= 0"


def pixel_count(value, minimum: int, rule: str) -> int:
    """``value`` as an int of at least ``minimum``; ``ValueError(f"{rule}, got {value!r}")`` otherwise. A bool is
    refused although Python takes it for an int (``tile=True`` is no tile size)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{rule}, got {value!r}")
    return int(value)


def resolve_device(spec) -> torch.device:
    """A torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...) checked to be usable here."""
    if spec is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {spec!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r}: no CUDA GPU is visible to torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    elif device.type != "cpu":
        try:
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as exc:
            raise ValueError(f"device {spec!r} is not available here ({str(exc).splitlines()[0]})") from None
    return device


def free_memory(device: torch.device) -> int:
    """Bytes free for activations on ``device`` (4 GiB where it cannot be asked)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    return 4 << 30


def activation_bytes_per_pixel(config, element_size: int) -> int:
    """An upper estimate of the bytes a forward keeps alive per LR pixel: the input, head output and block
    input/output, two wide activations, and the tail, skip and shuffle outputs (held against measurements in
    benchmarks/README.md, "Where the design numbers come from")."""
    channels = 3 + 3 * config.n_feats + 2 * config.wide_feats + 4 * config.out_feats
    return element_size * channels


def fitting_tile(config, device: torch.device, element_size: int, pad: int, frames: int = 1) -> int:
    """The largest tile side (a multiple of 8, at least MIN_TILE) whose padded activations for ``frames`` frames
    run together fit ``device`` and the fused kernels' 32-bit indexing."""
    share = 0.5 if device.type != "cpu" else 0.25
    pixels = share * free_memory(device) / activation_bytes_per_pixel(config, element_size) / frames
    widest = max(config.wide_feats, config.out_feats)
    side = min(math.isqrt(int(pixels)), math.isqrt(INT32_ELEMENTS // (widest * frames))) - 2 * pad
    if device.type == "cpu":
        side = min(side, CPU_TILE_LIMIT)
    return max(MIN_TILE, side // 8 * 8)


def half_dtype(device: torch.device, config) -> torch.dtype:
    """What half precision runs in on ``device`` for a model of ``config``: float16 on a GPU; on a CPU bfloat16 where
    the CPU kernels run it (AVX512-BF16), else float32, with a warning saying why (float16 is no CPU speed path)."""
    if device.type != "cpu":
        return torch.float16
    reason = ops.unavailable_reason("cpu", device, config, torch.bfloat16)
    if reason is None:
        return torch.bfloat16
    warnings.warn(f"half precision on this CPU runs in float32: {reason}", stacklevel=3)
    return torch.float32


class Upscaler:
    """WDSR upscaling of whole images for applications.

    weights: a checkpoint path (ours or the authors'), a ``WDSR`` model, or None for the bundled weights of
    ``scale`` (default 2). device: any torch device string (default: CUDA if visible, else CPU). half: float16
    on a GPU; on a CPU bfloat16 where its bf16 kernels run (AVX512-BF16), else float32 with a warning. tile:
    "auto" (fit the device memory, halve on out-of-memory), a side in LR pixels (an int; not a bool), or None
    (whole images). alpha: "bicubic" (default) or "wdsr" (the alpha plane through the network as gray).
    progress: a tqdm bar over the tiles of each image that has more than one.

    ``upscale(image)`` takes a PIL image or a numpy array (H, W) / (H, W, C), uint8 or uint16, C = 1 gray,
    2 gray + alpha, 3 RGB, 4 RGBA, and returns the same kind, ``scale`` times larger. A numpy array comes back
    with the same shape and dtype. A PIL image comes back in the working mode of its mode (the mode itself for
    L, LA, RGB, RGBA and I;16; the network works on these):

    - I;16B, I;16L, I;16N -> I;16 (the same 16-bit values, native byte order)
    - 1 -> L (the upscaled gray is kept, not thresholded back to two levels)
    - P -> RGB, or RGBA when the palette has a transparent entry; PA -> RGBA (never quantised back to a palette)
    - L, RGB with a transparent colour (``info["transparency"]``) -> LA, RGBA
    - La -> LA, RGBa -> RGBA (alpha no longer premultiplied)
    - RGBX, YCbCr -> RGB
    - CMYK -> RGB: through its ICC profile to sRGB (the output carries the sRGB profile), or by plain inversion
      when it has none
    - I (32-bit integer), F (32-bit float) and other modes are refused (``ImageError``)

    ``upscale_picture`` lists the conversions made in the picture's notes.
    A PIL image with several frames (an animated GIF, WebP or PNG, a multi-page TIFF) is refused with
    ``ImageError``, as the command refuses such a file: upscale frames one by one (``image.seek(i)``, then
    ``image.copy()``, a single frame).
    """

    def __init__(self, weights=None, scale: int | None = None, device=None, half: bool = False, tile="auto",
                 tile_pad: int | None = None, backend: str = "auto", alpha: str = "bicubic", progress: bool = False):
        if alpha not in ALPHA_MODES:
            raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
        if not (isinstance(tile, str) and tile == "auto") and tile is not None:
            tile = pixel_count(tile, 1, "tile must be 'auto', None or a positive number of pixels")
        if tile_pad is not None:
            tile_pad = pixel_count(tile_pad, 0, TILE_PAD_RULE)
        self.device = resolve_device(device)
        if isinstance(weights, WDSR):
            reference, self.weights = weights, "the given model"
        else:
            if weights is None:
                weights = bundled_weights.bundled_path(scale or 2)
                if weights is None:
                    raise ValueError(f"no bundled weights for x{scale or 2} in this install; pass a checkpoint file")
            reference, self.weights = load_model(weights), str(weights)
        if scale is not None and reference.config.scale != scale:
            raise ValueError(f"{self.weights} is a x{reference.config.scale} model but scale {scale} was asked")
        bad = [name for name, p in reference.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise ValueError(f"{self.weights}: weights hold NaN or infinite values ({', '.join(bad[:3])}"
                             f"{', ...' if len(bad) > 3 else ''})")
        model = reference if isinstance(reference, FastWDSR) else FastWDSR.from_reference(reference, backend=backend)
        self.model = model.to(self.device).eval()
        self.model.range_hint = False  # the pixels are scaled to [0, rgb_range] here: a dark image is no mistake
        self.config = self.model.config
        self.scale = self.config.scale
        self.dtype = half_dtype(self.device, self.config) if half else torch.float32
        self.tile, self.alpha, self.progress = tile, alpha, progress
        self.tile_pad = self.config.receptive_radius if tile_pad is None else tile_pad
        self._fitted_tiles: dict[int, int] = {}  # tile="auto": the size that last fitted, by frames run together

    # -- public -------------------------------------------------------------------------------------
    def upscale(self, image):
        """A PIL image or numpy array, upscaled (see the class docstring)."""
        if isinstance(image, Image.Image):
            check_single_frame(image)
            return picture_to_pil(self.upscale_picture(picture_from_pil(image)))
        if isinstance(image, np.ndarray):
            out = self.upscale_picture(Picture(image)).pixels
            return out[..., 0] if image.ndim == 2 else out
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")

    def upscale_picture(self, picture: Picture) -> Picture:
        """A ``Picture`` upscaled, its metadata kept and what was done added to its notes."""
        notes = list(picture.notes)
        if picture.is_gray:
            notes.append("gray run as RGB, written back gray")
        if picture.has_alpha:
            notes.append(f"alpha upscaled by {'bicubic' if self.alpha == 'bicubic' else 'WDSR as gray'}")
        pixels = self.upscale_pixels(picture.pixels, notes)
        return Picture(pixels, picture.icc_profile, picture.exif, notes, picture.source_format)

    def upscale_pixels(self, pixels: np.ndarray, notes: list[str] | None = None) -> np.ndarray:
        """(H, W, C) uint8/uint16 -> (sH, sW, C) of the same dtype; (N, H, W, C) frames of one size and dtype,
        run through the network together, -> (N, sH, sW, C)."""
        frames = pixels if pixels.ndim == 4 else pixels[None]
        count, height, width, channels = frames.shape
        if height == 0 or width == 0:
            raise ValueError(f"empty image {width}x{height}")
        lr = torch.from_numpy(frames.transpose(0, 3, 1, 2).copy())  # (N, C, H, W) on the host
        result = torch.empty(count, height * self.scale, width * self.scale, channels,
                             dtype=torch.uint8 if pixels.dtype == np.uint8 else torch.uint16)
        tile = self._start_tile(height, width, count)
        while True:
            try:
                self._run(lr, result.permute(0, 3, 1, 2), pixels.dtype, tile)
                break
            except torch.OutOfMemoryError:
                if self.tile != "auto" or tile <= MIN_TILE:
                    raise UpscaleError(f"out of memory on {self.device} with {tile}x{tile}-pixel tiles"
                                       + ("" if self.tile != "auto" else " (the smallest)")) from None
            tile = self._fitted_tiles[count] = max(MIN_TILE, min(tile, max(height, width)) // 2)
            if notes is not None:
                notes.append(f"out of device memory: tile {tile}")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return result.numpy() if pixels.ndim == 4 else result[0].numpy()

    def upscale_frames(self, frames: Iterable[np.ndarray], batch: int = 1) -> Iterator[np.ndarray]:
        """Frames in, upscaled frames out, in order: an iterable of (H, W) or (H, W, C) uint8/uint16 arrays (a
        video decoded by the caller's own pipeline, say) -> an iterator of arrays, each as ``upscale`` returns it.
        ``batch``: up to that many consecutive frames of one size and dtype go through the network together
        (worth it on a GPU). Frames are taken lazily: at most ``batch`` are held. Files: ``wdsr_fast.upscale_video``.
        """
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        return self._frames(frames, batch)

    # -- internals ----------------------------------------------------------------------------------
    def _frames(self, frames: Iterable[np.ndarray], batch: int) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        for frame in frames:
            if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3):
                raise TypeError(f"expected (H, W) or (H, W, C) numpy frames, got "
                                f"{getattr(frame, 'shape', type(frame).__name__)}")
            if pending and (frame.shape != pending[0].shape or frame.dtype != pending[0].dtype):
                yield from self._upscale_batch(pending)
                pending = []
            pending.append(frame)
            if len(pending) == batch:
                yield from self._upscale_batch(pending)
                pending = []
        if pending:
            yield from self._upscale_batch(pending)

    def _upscale_batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        pictures = [Picture(frame).pixels for frame in frames]  # checks channels and dtype as upscale() does
        out = self.upscale_pixels(np.stack(pictures))
        return [o[..., 0] if f.ndim == 2 else o for o, f in zip(out, frames, strict=True)]

    def _start_tile(self, height: int, width: int, frames: int) -> int:
        if self.tile is None:
            return max(height, width)
        if self.tile != "auto":
            return self.tile
        if frames not in self._fitted_tiles:
            element_size = torch.finfo(self.dtype).bits // 8
            self._fitted_tiles[frames] = fitting_tile(self.config, self.device, element_size, self.tile_pad, frames)
        return self._fitted_tiles[frames]

    def _run(self, lr: torch.Tensor, out: torch.Tensor, dtype, tile: int) -> None:
        count = len(tile_windows(lr.shape[-2], lr.shape[-1], tile, self.tile_pad))
        bar = None
        if self.progress and count > 1:
            from tqdm import tqdm

            bar = tqdm(total=count, desc="tiles", unit="tile", leave=False)
        try:
            with torch.inference_mode():
                run_tiled(lambda tile_lr: self._process(tile_lr, dtype), lr, out, self.scale, tile, self.tile_pad,
                          bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()

    def _process(self, lr: torch.Tensor, dtype) -> torch.Tensor:
        """(1, C, h, w) integer samples on the host -> (1, C, sh, sw) integer samples on the device."""
        rgb_range = self.config.rgb_range
        x = lr.to(self.device).float() * (rgb_range / float(np.iinfo(dtype).max))  # float16 cannot hold 65535
        channels = x.shape[1]
        color = x[:, :3] if channels >= 3 else x[:, :1].expand(-1, 3, -1, -1)
        sr = self._network(color)
        if channels <= 2:
            sr = _to_gray(sr)
        if channels in (2, 4):
            alpha = x[:, -1:]
            if self.alpha == "bicubic":
                alpha = F.interpolate(alpha.float(), scale_factor=self.scale, mode="bicubic", align_corners=False)
            else:
                alpha = _to_gray(self._network(alpha.expand(-1, 3, -1, -1)))
            sr = torch.cat([sr.float(), alpha.float()], dim=1)
        return quantize(sr, rgb_range, dtype)

    def _network(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) float32 -> the network's output, checked to be finite."""
        sr = self.model(image.to(self.dtype).contiguous())
        if not bool(torch.isfinite(sr).all()):
            raise UpscaleError(f"the network produced NaN or infinite values with weights {self.weights}"
                               + (f" in {str(self.dtype).removeprefix('torch.')} (try without half precision)"
                                  if self.dtype != torch.float32 else ""))
        return sr


def check_single_frame(image: Image.Image) -> None:
    """``ImageError`` for a PIL image with several frames (an animated GIF, WebP or PNG, a multi-page TIFF): the
    message ``read_image`` gives for such a file, so that the API refuses what the command refuses."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        name = getattr(image, "filename", "") or "the PIL image"
        raise ImageError(f"{name}: has {frames} frames (an animation or a multi-page file); only single images are "
                         f"upscaled")


def _to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W), BT.601 luma in float32."""
    weights = torch.tensor(LUMA, device=rgb.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (rgb.float() * weights).sum(dim=1, keepdim=True)

