"""`wdsr-fast export`: write a checkpoint as an ONNX file (see ``wdsr_fast.deploy.onnx`` for the file's contract)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..deploy.onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ExportError, export_onnx
from ..model.checkpoint import CheckpointError, load_model


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a checkpoint as an ONNX file (dynamic shapes, checked in ONNX Runtime)",
        description="Write WEIGHTS as an ONNX file: plain convolutions and a pixel shuffle, normalisation inside; "
        "input 'lr' and output 'sr' are RGB NCHW images in [0, rgb_range]. The file is checked with onnx.checker "
        "and ONNX Runtime against the reference before it replaces anything at --out.")
    parser.add_argument("weights", type=Path, metavar="WEIGHTS", help="checkpoint (.safetensors/.pth; ours or the "
                        "authors')")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="FILE", help="the .onnx file to write")
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


def run(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.weights)
        path = export_onnx(model, args.out, static=args.static, opset=args.opset, half=args.half)
    except (CheckpointError, ExportError, ImportError, ValueError, OSError) as exc:  # OSError: an unwritable --out
        raise SystemExit(f"error: {exc}") from None
    cfg = model.config
    shapes = "batch dynamic, {}x{} fixed".format(*args.static) if args.static else "batch, height and width dynamic"
    print(f"wrote {path}: WDSR-{cfg.variant.upper()} x{cfg.scale}, {'float16' if args.half else 'float32'}, "
          f"opset {args.opset}, {shapes}; checked in ONNX Runtime against the reference")
    return 0
