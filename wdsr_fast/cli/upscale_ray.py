"""``wdsr-fast upscale ... --ray [ADDRESS]``: the same batch on a Ray cluster (``inference/cluster.py``): parse,
call, print the per-worker summary and the plain command's summary lines."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

LOCAL = "local"  # --ray alone, or --ray local: a local Ray started and ended by the command
ADDRESS = re.compile(r"auto|ray://\S+|[\w.-]+:\d+|\[[0-9A-Fa-f:.]+\]:\d+")  # auto, ray://..., HOST:PORT, [IPv6]:PORT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
                        help="run on Ray (pip install 'wdsr-fast[ray]'): alone or 'local', a local Ray; 'auto', "
                             "ray://HOST:PORT or HOST:PORT, a cluster whose nodes all see the inputs and OUTDIR "
                             "(an existing file or folder after --ray is an input)")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="with --ray: how many actors (default: one per GPU, or as many of --threads CPUs as "
                             "the nodes hold)")


def split_address(value: str, inputs: list[Path]) -> tuple[str, list[Path]]:
    """(the address --ray was given: ``LOCAL``, ``auto``, ``ray://...`` or ``HOST:PORT``; the inputs). argparse
    gives --ray the word after it, which in ``--ray photo.png -o out`` is an input: a file or folder that exists is
    put back first among the inputs. ``ValueError`` for a word that is neither."""
    if os.path.lexists(value):
        return LOCAL, [Path(value), *inputs]
    if value == LOCAL or ADDRESS.fullmatch(value):
        return value, inputs
    raise ValueError(f"--ray {value}: not a Ray address (local, auto, ray://HOST:PORT or HOST:PORT), nor a file or "
                     f"folder that exists")


def run(args: argparse.Namespace) -> int:
    from ..inference.cluster import ClusterError, upscale_on_ray

    try:
        report = upscale_on_ray(
            args.inputs, args.out, address=None if args.ray == LOCAL else args.ray, weights=args.weights,
            scale=args.scale, ext=args.ext, suffix=args.suffix, quality=args.quality, recursive=args.recursive,
            overwrite=args.overwrite, tile=args.tile, tile_pad=args.tile_pad, backend=args.backend,
            alpha=args.alpha, device=args.device, half=args.half, threads=args.threads, workers=args.ray_workers,
            max_pixels=args.max_pixels, codec=args.codec, crf=args.crf, preset=args.preset, batch=args.batch)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    for name, totals in sorted(report.workers.items()):
        print(totals.line(name), file=sys.stderr)
    if report.failed:
        print(f"failed ({len(report.failed)}): " + "; ".join(o.line.removeprefix("error: ") for o in report.failed),
              file=sys.stderr)
    print(report.summary())
    return report.status
