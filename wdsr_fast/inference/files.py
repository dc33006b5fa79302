"""The batch over image files behind ``wdsr-fast upscale``: which files, their output names, and one file read,
upscaled and written. The output folder is checked to be writable before any model work; two inputs with one
output, or an output that is an input, are refused by name; outputs are written atomically, never over a file
that appeared meanwhile unless asked."""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..io.images import FORMATS, IMAGE_SUFFIXES, ImageError, fit_alpha, read_image, write_image
from .upscaler import Upscaler

EXTENSIONS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF", "same": None}
SUFFIX_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
                  ".bmp": "BMP"}


class OutputFolderError(ValueError):
    """The output folder cannot be used."""


@dataclass
class Job:
    source: Path
    target: Path
    fmt: str
    problem: str | None = None  # known before reading: a name clash


def collect_images(inputs: list[Path], recursive: bool, out: Path,
                   suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[tuple[Path, Path]]:
    """(file, folder relative to OUTDIR) for files as given and the images in folders (sorted; with
    ``recursive`` the sub-folders too, hidden ones and OUTDIR itself left out); ``suffixes``: what a folder's
    files are taken by (the upscale command adds the video suffixes)."""
    out_resolved = out.resolve()
    found = []
    for item in inputs:
        if not item.is_dir():
            found.append((item, Path()))
            continue
        for root_name, dirs, files in os.walk(item):
            root = Path(root_name)
            dirs[:] = sorted(d for d in dirs if recursive and not d.startswith(".")
                             and (root / d).resolve() != out_resolved)
            found.extend((root / name, root.relative_to(item)) for name in sorted(files)
                         if not name.startswith(".") and Path(name).suffix.lower() in suffixes)
    return found


def plan(files: list[tuple[Path, Path]], out: Path, ext: str, suffix: str) -> list[Job]:
    """The output of each input; two inputs with one output, or an output that is an input, are refused by name."""
    inputs = {path.resolve() for path, _ in files}
    jobs: list[Job] = []
    claimed: dict[Path, Path] = {}
    for path, folder in files:
        fmt = EXTENSIONS[ext] or SUFFIX_FORMATS.get(path.suffix.lower(), "PNG")
        ending = path.suffix if ext == "same" and path.suffix.lower() in SUFFIX_FORMATS else FORMATS[fmt].suffix
        target = out / folder / f"{path.stem}{suffix}{ending}"
        job = Job(path, target, fmt)
        key = target.resolve()
        if key in claimed:
            job.problem = f"{claimed[key]} is also written to {target}: rename one of them (or use --suffix)"
        elif key in inputs:
            job.problem = f"its output {target} is an input of this run: choose another --out or --suffix"
        else:
            claimed[key] = path
        jobs.append(job)
    return jobs


def check_output_folder(out: Path) -> None:
    """An ``OutputFolderError`` unless ``out`` is (or can be made) a folder that files can be written in."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"output folder {out} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".wdsr-fast-write-check.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise OutputFolderError(f"cannot write into output folder {out}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def pixel_budget(max_pixels: int):
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels or None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def upscale_file(upscaler: Upscaler, job: Job, quality: int, replace: bool = True) -> str:
    """Read, upscale and write one file; the log line. Raises ImageError/UpscaleError/OSError/MemoryError."""
    picture = read_image(job.source)
    before = picture.describe()
    try:
        picture = fit_alpha(picture, job.fmt)  # before the work: a transparent picture for JPEG is refused now
    except ImageError as exc:
        raise ImageError(f"{job.source}: {exc}") from None
    result = upscaler.upscale_picture(picture)
    try:
        notes = result.notes + write_image(result, job.target, job.fmt, quality, replace)
    except ImageError as exc:
        raise ImageError(f"{job.source}: {exc}") from None
    except FileExistsError:  # the target appeared meanwhile (replace=False): the caller says so
        raise
    except OSError as exc:
        raise ImageError(f"{job.source}: cannot write {job.target}: {exc.strerror or exc}") from None
    size = f"{result.pixels.shape[1]}x{result.pixels.shape[0]}"
    return f"{job.source} -> {job.target} ({before} -> {size}" + "".join(f"; {n}" for n in notes) + ")"
