"""The ``wdsr-fast`` command (also ``python -m wdsr_fast``). Each subcommand lives in its own module, which
provides ``add_parser(subparsers)`` registering the subcommand and its handler (``func``): it parses, calls the
library and prints."""
from __future__ import annotations

import argparse
import sys

from . import bench, demo, eval, export, info, train, upscale

SUBCOMMAND_MODULES = [upscale, demo, train, eval, bench, export, info]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="wdsr-fast", description="WDSR super-resolution: upscale, train, "
                                     "evaluate, benchmark, export and describe models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMAND_MODULES:
        module.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
