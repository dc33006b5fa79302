"""The ``wdsr-fast`` command (also ``python -m wdsr_fast``). Each subcommand lives in its own module, which
provides ``add_parser(subparsers)`` registering the subcommand and its handler (``func``): it parses, calls the
library and prints.

The subcommand modules (and with them torch) are imported inside ``main``, so that Ctrl-C at any time, start-up
included, ends the command with "interrupted" and exit status 130 rather than a traceback."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The ``wdsr-fast`` parser with every subcommand (imports them, and torch)."""
    from . import bench, demo, eval, export, info, train, upscale

    parser = argparse.ArgumentParser(prog="wdsr-fast", description="WDSR super-resolution: upscale, train, "
                                     "evaluate, benchmark, export and describe models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (upscale, demo, train, eval, bench, export, info):
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
