"""The ``wdsr-fast`` command (also ``python -m wdsr_fast``). Each subcommand lives in its own module,
which provides ``add_parser(subparsers)`` registering the subcommand and its handler (``func``)."""
from __future__ import annotations

import argparse
import sys

from . import bench, demo, evaluate, export_command, info_command, train, upscale

SUBCOMMAND_MODULES = [upscale, demo, train, evaluate, bench, export_command, info_command]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="wdsr-fast", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMAND_MODULES:
        module.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
