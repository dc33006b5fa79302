"""Inference on images: Pillow I/O, tiled upscaling, and the ``wdsr-fast upscale`` command.

Tiling: the LR image is cut into tiles of ``tile`` x ``tile`` pixels; each is run with ``tile_pad`` pixels of
real context on every side (clipped at the image border, where the network zero-pads as it would untiled)
and only its own part of the output is kept. With ``tile_pad`` at least the network's receptive radius
(``WDSRConfig.receptive_radius``, the default) every output pixel sees exactly the inputs it sees untiled,
so tiled and untiled outputs agree (to float rounding).

Choices the command makes: only RGB images are taken; grayscale, RGBA, palette or 16-bit files are refused with
a message naming their mode (converting them would change the picture silently, e.g. dropping alpha). ``--half``
without ``--device cuda`` is an error, not a warning. Without ``--weights`` the bundled checkpoint for the scale is
used, and where none ships the command stops: it never upscales with random weights. A bad file is reported and
skipped; the exit status is 1 when any file failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_path
from .model import check_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageError(ValueError):
    """An input image that cannot be upscaled, with the reason."""


# -- image I/O ------------------------------------------------------------------------------------

def read_rgb(path: Path) -> np.ndarray:
    """An RGB image file as an (H, W, 3) uint8 array; other modes (grayscale, RGBA, palette...) are refused."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            array = np.array(img) if mode == "RGB" else None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable PNG/JPEG image ({exc})") from None
    if array is None:
        raise ImageError(f"{path}: image mode is {mode!r}; WDSR takes RGB images (convert it to RGB first)")
    return array


def save_png(array: np.ndarray, path: Path) -> None:
    """Write an (H, W, 3) uint8 array as PNG atomically (a temp file in the same folder, then a rename)."""
    with atomic_path(path) as tmp:
        Image.fromarray(array, "RGB").save(tmp, format="PNG")


def uint8_to_tensor(array: np.ndarray, rgb_range: float) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, rgb_range]."""
    tensor = torch.from_numpy(np.array(array)).permute(2, 0, 1).unsqueeze(0).float()
    return tensor * (rgb_range / 255.0)


def tensor_to_uint8(tensor: torch.Tensor, rgb_range: float) -> np.ndarray:
    """(1, 3, H, W) in [0, rgb_range] -> (H, W, 3) uint8, clamped and rounded."""
    scaled = tensor[0].float() * (255.0 / rgb_range)
    return scaled.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


# -- tiled inference ------------------------------------------------------------------------------

def upscale_tensor(model, image: torch.Tensor, tile: int | None = None,
                   tile_pad: int | None = None) -> torch.Tensor:
    """model(image), computed tile by tile when ``tile`` is set. image: (N, 3, H, W) -> (N, 3, sH, sW)."""
    check_image(image)
    if tile is not None and tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    pad = model.config.receptive_radius if tile_pad is None else tile_pad
    if pad < 0:
        raise ValueError(f"tile_pad must be >= 0, got {pad}")
    height, width = image.shape[-2:]
    if tile is None or (tile >= height and tile >= width):
        return model(image)
    scale = model.config.scale
    out = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(top - pad, 0), max(left - pad, 0)
            y1, x1 = min(bottom + pad, height), min(right + pad, width)
            tile_out = model(image[..., y0:y1, x0:x1])
            if out is None:
                out = tile_out.new_empty(image.shape[0], 3, height * scale, width * scale)
            out[..., top * scale:bottom * scale, left * scale:right * scale] = tile_out[
                ..., (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
    return out


# -- the upscale command --------------------------------------------------------------------------

def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "upscale", help="upscale PNG/JPEG images", description="Upscale PNG/JPEG files (or folders of them) "
        "with WDSR and write <name>_x<scale>.png files.")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4),
                        help="upscaling factor (default: that of --weights, or 2 with the bundled weights)")
    parser.add_argument("--weights", type=Path, help="checkpoint (.safetensors/.pth; ours or the authors')")
    parser.add_argument("--tile", type=_int_at_least(1), help="tile size in input pixels (bounds memory on big images)")
    parser.add_argument("--tile-pad", type=_int_at_least(0),
                        help="context around each tile (default: the receptive radius, which makes tiling exact)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--half", action="store_true", help="run in float16 (CUDA only)")
    parser.add_argument("--backend", choices=("auto", "cuda", "triton", "torch"), default="auto")
    parser.set_defaults(func=run)


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value
    return parse


def collect_images(inputs: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their PNG/JPEG files (sorted, not recursive)."""
    files = []
    for item in inputs:
        if item.is_dir():
            files.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(item)
    return files


def load_upscaler(args: argparse.Namespace):
    """The FastWDSR the command runs, or SystemExit with a message saying what is wrong."""
    from .checkpoint import CheckpointError, load_model
    from .fast import FastWDSR
    from .weights import bundled_path

    weights = args.weights
    if weights is None:
        weights = bundled_path(args.scale or 2)
        if weights is None:
            raise SystemExit(f"error: no bundled weights for x{args.scale or 2} in this install; "
                             "pass a checkpoint with --weights FILE")
    try:
        reference = load_model(weights)
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.scale is not None and reference.config.scale != args.scale:
        raise SystemExit(f"error: {weights} is a x{reference.config.scale} model but --scale {args.scale} was asked")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA GPU is visible to torch")
    if args.half and args.device != "cuda":
        raise SystemExit("error: --half needs --device cuda (float16 convolutions are not a CPU speed path)")
    model = FastWDSR.from_reference(reference, backend=args.backend).to(args.device).eval()
    return model


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    model = load_upscaler(args)
    dtype = torch.float16 if args.half else torch.float32
    files = collect_images(args.inputs)
    if not files:
        raise SystemExit("error: no PNG/JPEG images found in the inputs")
    args.out.mkdir(parents=True, exist_ok=True)
    scale, rgb_range = model.config.scale, model.config.rgb_range
    failures, written = [], set()
    for path in tqdm(files, desc="upscaling", unit="image", file=sys.stderr):
        target = args.out / f"{path.stem}_x{scale}.png"
        try:
            if target in written:
                raise ImageError(f"{path}: another input already wrote {target}")
            lr = uint8_to_tensor(read_rgb(path), rgb_range).to(args.device, dtype)
            with torch.inference_mode():
                sr = upscale_tensor(model, lr, args.tile, args.tile_pad)
            save_png(tensor_to_uint8(sr, rgb_range), target)
            written.add(target)
        except (ImageError, ValueError, RuntimeError) as exc:
            failures.append(path)
            tqdm.write(f"error: {exc}", file=sys.stderr)
    print(f"{len(files) - len(failures)} of {len(files)} images upscaled x{scale} into {args.out}"
          + (f"; {len(failures)} failed" if failures else ""))
    return 1 if failures else 0
