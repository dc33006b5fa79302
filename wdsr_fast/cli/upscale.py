"""``wdsr-fast upscale``: a loop over image files around ``Upscaler`` (see README, "Upscaling images").

Before any model work the output folder is created and checked to be writable and the inputs are listed; each
input gets one line (what was written and every conversion made, or why it failed: a missing file, a link to
nowhere, a corrupt file, a full disk...); the batch goes on past a failed file and the exit status is 1 when any
failed. A --backend that cannot run on the device, or a --suffix with a path separator, stops the command at once
(exit status 2). Existing outputs are skipped unless ``--overwrite``, and so are those another run puts in place
meanwhile; files are written atomically and their temporary files are removed on SIGINT/SIGTERM, and those a
killed run left behind are removed when the next run writes that output.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import warnings
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from .. import ops
from ..inference.files import (
    EXTENSIONS,
    OutputFolderError,
    backend_problem,
    check_output_folder,
    collect_images,
    left_out_note,
    pixel_budget,
    run_job,
    suffix_problem,
    summary,
    tile_pad_warning,
    upscale_file,
)
from ..inference.upscaler import ALPHA_MODES, Upscaler
from ..inference.video import NOTHING_FOUND, UPSCALE_SUFFIXES, plan_upscale
from ..io.video import CONTAINERS
from ..model import SCALES, CheckpointError
from . import upscale_ray
from .upscale_video import add_video_arguments, run_videos


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "upscale", help="upscale images (PNG, JPEG, WebP, TIFF, BMP) and videos",
        description="Upscale image and video files (or folders of them) with WDSR and write <name><suffix>.<ext> "
                    "files into OUTDIR.")
    parser.add_argument("inputs", nargs="*", type=Path, metavar="INPUT",
                        help="image and video files or folders (at least one)")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument("--scale", type=int, choices=SCALES,
                        help="upscaling factor (default: that of --weights, or 2 with the bundled weights)")
    parser.add_argument("--weights", type=Path, help="checkpoint (.safetensors/.pth; ours or the authors')")
    parser.add_argument("--tile", type=_tile, default="auto",
                        help="tile side in input pixels, or 'auto' (default): the largest that fits the device's "
                             "free memory, halved on out-of-memory")
    parser.add_argument("--tile-pad", type=_int_at_least(0),
                        help="context around each tile in input pixels (default: the receptive radius, which makes "
                             "tiling exact; below it, tile seams can show, and a warning says so)")
    parser.add_argument("--device", default=None,
                        help="any torch device: cpu, cuda, cuda:1, mps, ... (default: cuda if visible, else cpu)")
    parser.add_argument("--half", action="store_true",
                        help="run the network in half precision: float16 on a GPU, bfloat16 on a CPU with "
                        "AVX512-BF16 (elsewhere float32, with a warning)")
    parser.add_argument("--backend", choices=(ops.AUTO, *ops.BACKENDS), default=ops.AUTO,
                        help="what runs the network's fused ops (default: auto, the fastest that can run on the "
                             "device); one that cannot run there stops the command before the first file")
    parser.add_argument("--alpha", choices=ALPHA_MODES, default="bicubic",
                        help="how transparency is upscaled: bicubic (default) or wdsr (the alpha plane as gray)")
    parser.add_argument("--ext", choices=(*EXTENSIONS, *CONTAINERS), default="png",
                        help="output format of images (default: png) or container of videos (default: the "
                             "input's); 'same' keeps each input's format")
    parser.add_argument("--quality", type=_quality, default=95, help="JPEG/WebP quality 1-100 (default: 95)")
    parser.add_argument("--suffix", help="added to each output's name, without a path separator (default: "
                                          "_x<scale>)")
    parser.add_argument("--recursive", action="store_true",
                        help="take images in sub-folders too, mirroring the folder tree under OUTDIR")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    parser.add_argument("--threads", type=_int_at_least(1),
                        help="CPU threads (default: torch's, one per core); on a machine whose cores are busy with "
                             "other work, the free cores run faster than all of them")
    parser.add_argument("--max-pixels", type=_int_at_least(0), default=Image.MAX_IMAGE_PIXELS,
                        help="refuse inputs with more pixels, checked before decoding (default: %(default)s; "
                             "0: no limit)")
    add_video_arguments(parser)
    upscale_ray.add_arguments(parser)
    parser.set_defaults(func=run)


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value
    return parse


def _tile(text: str):
    return "auto" if text == "auto" else _int_at_least(1)(text)


def _quality(text: str) -> int:
    value = _int_at_least(1)(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100, got {value}")
    return value


@contextlib.contextmanager
def terminate_as_exit():
    """SIGTERM raises SystemExit(143) so that temporary files are removed as on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    if args.ray is not None:
        try:  # --ray's optional address may be the first input: ``--ray photo.png -o out``
            args.ray, args.inputs = upscale_ray.split_address(args.ray, args.inputs)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not args.inputs:
        print("error: no INPUT given: name the image and video files or folders to upscale", file=sys.stderr)
        return 2
    if args.ray is not None:
        with terminate_as_exit():  # SIGTERM ends the Ray this command started, as Ctrl-C does
            return upscale_ray.run(args)
    if args.suffix is not None and (problem := suffix_problem(args.suffix)) is not None:
        print(f"error: --suffix {args.suffix!r} {problem}", file=sys.stderr)
        return 2
    found = collect_images(args.inputs, args.recursive, args.out, UPSCALE_SUFFIXES)
    if all(item.problem is not None for item in found):
        for item in found:
            print(f"error: {item.path}: {item.problem}", file=sys.stderr)
        raise SystemExit(f"error: {NOTHING_FOUND}")
    try:
        check_output_folder(args.out)
    except OutputFolderError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            upscaler = Upscaler(weights=args.weights, scale=args.scale, device=args.device, half=args.half,
                                tile=args.tile, tile_pad=args.tile_pad, backend=args.backend, alpha=args.alpha,
                                progress=True)
    except (CheckpointError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    for construction_warning in caught:
        print(f"warning: {construction_warning.message}", file=sys.stderr)
    if (reason := backend_problem(upscaler, args.backend)) is not None:
        print(f"error: --backend {args.backend} cannot run on {upscaler.device}: {reason}", file=sys.stderr)
        return 2
    if (warning := tile_pad_warning(upscaler)) is not None:
        print(f"warning: --tile-pad {args.tile_pad}: {warning}", file=sys.stderr)
    suffix = f"_x{upscaler.scale}" if args.suffix is None else args.suffix
    jobs, videos, left_out = plan_upscale(found, args.out, args.ext, suffix)
    if left_out:
        print(left_out_note(left_out), file=sys.stderr)

    def image(job):
        return upscale_file(upscaler, job, args.quality, replace=args.overwrite), 0

    outcomes = []
    with terminate_as_exit(), pixel_budget(args.max_pixels):
        for job in tqdm(jobs, desc="upscaling", unit="image", file=sys.stderr, disable=not jobs):
            outcomes.append(run_job(job, image))
            tqdm.write(outcomes[-1].line, file=sys.stderr)
        if jobs or not videos:
            print(summary(outcomes, "image", upscaler.scale, args.out))
        if videos:  # after the images: one line and a frame bar per video, and their own summary
            outcomes += run_videos(args, upscaler, videos)
    return 1 if any(o.status == "failed" for o in outcomes) else 0
