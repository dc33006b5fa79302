"""`wdsr-fast export`: write a checkpoint as an ONNX file (see ``wdsr_fast.deploy.onnx`` for the file's contract)."""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from ..deploy.onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ExportError, export_onnx
from ..model.checkpoint import CheckpointError, load_model


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a checkpoint as an ONNX file (dynamic shapes, checked in ONNX Runtime)",
        description="Write WEIGHTS as an ONNX file: plain convolutions and a pixel shuffle, normalisation inside; "
        "input 'lr' and output 'sr' are RGB NCHW images in [0, rgb_range]. The file is checked with onnx.checker "
        "and ONNX Runtime against the reference before it is given its name. --out is never the input, ends in .onnx "
        "(unless --force-suffix) and is not replaced unless --overwrite.")
    parser.add_argument("weights", type=Path, metavar="WEIGHTS", help="checkpoint (.safetensors/.pth; ours or the "
                        "authors')")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="FILE",
                        help="the .onnx file to write (never the input checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing FILE (default: refuse)")
    parser.add_argument("--force-suffix", action="store_true",
                        help="write FILE although its name does not end in .onnx (default: refuse, so that a "
                             "mistyped -o cannot overwrite a checkpoint or an image)")
    parser.add_argument("--static", type=_size, metavar="HxW",
                        help="fix height and width (e.g. 256x256) for runtimes that want static shapes; "
                             "batch stays dynamic (default: batch, height and width dynamic)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default: %(default)s; from {MIN_OPSET} to {MAX_OPSET})")
    parser.add_argument("--half", action="store_true", help="float16 weights, input and output")
    parser.set_defaults(func=run)


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if match is None or min(int(match.group(1)), int(match.group(2))) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH in positive pixels (e.g. 256x256), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def check_target(weights: Path, out: Path, overwrite: bool, force_suffix: bool) -> None:
    """SystemExit unless ``out`` may be written: not the input checkpoint (whatever the flags), a .onnx name unless
    ``force_suffix``, and no file there unless ``overwrite``."""
    if out.is_dir():
        raise SystemExit(f"error: -o {out} is a folder; name the .onnx file to write")
    if _same_file(weights, out):
        raise SystemExit(f"error: -o {out} is the input checkpoint {weights}; name another file (the weights "
                         f"would be lost)")
    if out.suffix.lower() != ".onnx" and not force_suffix:
        raise SystemExit(f"error: -o {out}: not an .onnx file name (suffix {out.suffix or 'none'!r}); "
                         f"--force-suffix writes it anyway")
    if out.exists() and not overwrite:
        raise SystemExit(f"error: {out} exists (--overwrite replaces it)")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # links and other names of the same file too
        return a.resolve() == b.resolve()
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    check_target(args.weights, args.out, args.overwrite, args.force_suffix)
    try:
        model = load_model(args.weights)
        path = export_onnx(model, args.out, static=args.static, opset=args.opset, half=args.half,
                           replace=args.overwrite)
    except (CheckpointError, ExportError, ImportError, ValueError, OSError) as exc:  # OSError: an unwritable --out
        raise SystemExit(f"error: {exc}") from None
    cfg = model.config
    shapes = "batch dynamic, {}x{} fixed".format(*args.static) if args.static else "batch, height and width dynamic"
    print(f"wrote {path}: WDSR-{cfg.variant.upper()} x{cfg.scale}, {'float16' if args.half else 'float32'}, "
          f"opset {args.opset}, {shapes}; checked in ONNX Runtime against the reference")
    return 0
