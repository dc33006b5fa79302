"""``wdsr-fast upscale --ray`` against the plain command on one machine: 100 small photos, bundled x2 weights.

Runs the two commands alternately (plain, --ray, plain, --ray, ...) as separate processes into fresh output
folders and prints each wall time and the medians; the photos are crops of scikit-image's sample photos, saved as
JPEG (``--size``, default 160x120). Also prints the storage's read and write rate for the scaling estimate in
benchmarks/README.md ("Upscaling on Ray").

    python benchmarks/ray_overhead.py --rounds 3
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_photos(folder: Path, count: int, width: int, height: int) -> None:
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        photo = sources[i % len(sources)]
        y, x = rng.integers(0, photo.shape[0] - height), rng.integers(0, photo.shape[1] - width)
        Image.fromarray(photo[y:y + height, x:x + width]).save(folder / f"photo{i:03d}.jpg", quality=92)


def timed(argv: list[str]) -> tuple[float, str]:
    """(wall seconds, the last worker line of a --ray run or "")."""
    start = time.perf_counter()
    run = subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    workers = [line for line in run.stderr.splitlines() if line.startswith("worker ")]
    return seconds, workers[-1] if workers else ""


def storage_rates(folder: Path) -> tuple[float, float]:
    """(read MB/s of the photos, write+fsync MB/s of as many bytes) on this folder's storage."""
    files = sorted(folder.iterdir())
    start = time.perf_counter()
    total = sum(len(p.read_bytes()) for p in files)
    read = total / (time.perf_counter() - start) / 1e6
    blob = os.urandom(total)
    target = folder.parent / "write-test.bin"
    start = time.perf_counter()
    with open(target, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    write = total / (time.perf_counter() - start) / 1e6
    target.unlink()
    return read, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="wdsr-ray-bench-"))
    try:
        make_photos(work / "in", args.count, width, height)
        command = [sys.executable, "-m", "wdsr_fast", "upscale", str(work / "in")]
        times: dict[str, list[float]] = {"plain": [], "ray": []}
        for round_ in range(args.rounds):
            for name, extra in (("plain", []), ("ray", ["--ray"])) if round_ % 2 == 0 else (
                    ("ray", ["--ray"]), ("plain", [])):
                out = work / f"out-{name}-{round_}"
                seconds, worker = timed([*command, "-o", str(out), *extra])
                times[name].append(seconds)
                print(f"round {round_} {name}: {seconds:.2f} s {worker}", flush=True)
                shutil.rmtree(out)
        plain, ray = statistics.median(times["plain"]), statistics.median(times["ray"])
        print(f"median plain {plain:.2f} s, --ray {ray:.2f} s: +{ray - plain:.2f} s ({(ray / plain - 1) * 100:.0f}%)")
        read, write = storage_rates(work / "in")
        print(f"storage: read {read:.0f} MB/s, write+fsync {write:.0f} MB/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
