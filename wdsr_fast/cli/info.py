"""`wdsr-fast info`: what a checkpoint or ONNX file holds (see ``wdsr_fast.deploy.describe``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..deploy.describe import describe_file
from ..model.checkpoint import CheckpointError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info", help="describe a checkpoint or ONNX file",
        description="Print the architecture, scale, widths, blocks, parameter count and normalisation of each FILE, "
        "with its source layout (checkpoints) or its inputs, outputs, opset and metadata (.onnx files).")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="checkpoint or .onnx file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    failures = 0
    for index, path in enumerate(args.files):
        try:
            rows = describe_file(path)
        except (CheckpointError, ImportError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        if index:
            print()
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            print(f"{label + ':':<{width + 1}} {value}")
    return 1 if failures else 0
