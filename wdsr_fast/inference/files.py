"""The batch over image files behind ``wdsr-fast upscale``: which files, their output names, and one file read,
upscaled and written. Inputs that lead nowhere (missing, a symbolic link loop or to a missing file, a folder that
cannot be listed) are kept with their problem, so that the batch names them and goes on; when the output folder
is also an input folder, the earlier outputs found there are left out. The output folder is checked to be
writable before any model work; two inputs with one output, or an output that is an input, are refused by name;
outputs are written atomically, never over a file that appeared meanwhile unless asked. ``run_job`` runs one file
as the command does, on one machine or a Ray worker, and turns its errors into the line the command prints."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .. import ops
from ..io.atomic import remove_leftovers
from ..io.images import FORMATS, IMAGE_SUFFIXES, ImageError, fit_alpha, read_image, write_image
from .upscaler import Upscaler

EXTENSIONS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF", "same": None}
SUFFIX_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
                  ".bmp": "BMP"}


class OutputFolderError(ValueError):
    """The output folder cannot be used."""


@dataclass
class Input:
    """An input file as the batch found it."""
    path: Path
    folder: Path  # the folder of its output, relative to OUTDIR
    problem: str | None = None  # known before reading: a missing file, a broken link, a folder that cannot be listed
    listed: bool = False  # found in a folder (False: named as an argument)


@dataclass
class Job:
    source: Path
    target: Path
    fmt: str
    problem: str | None = None  # known before reading: a name clash, or the input's problem
    kind: str = "image"  # or "video"


def collect_images(inputs: list[Path], recursive: bool, out: Path,
                   suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Input]:
    """The files as given and the images in folders (sorted; with ``recursive`` the sub-folders too, hidden ones,
    linked ones and OUTDIR itself left out). An input that cannot be used (missing, a broken or looping symbolic
    link, a folder that cannot be listed) comes with its problem, so that the batch can name it and go on.
    ``suffixes``: what a folder's files are taken by (the upscale command adds the video suffixes)."""
    out_real = real_path(out)
    found: list[Input] = []
    for item in inputs:
        problem = path_problem(item)
        if problem is None and item.is_dir():
            _collect_folder(item, Path(), recursive, out_real, suffixes, found)
        else:
            found.append(Input(item, Path(), problem))
    return found


def _collect_folder(folder: Path, relative: Path, recursive: bool, out_real: Path, suffixes: tuple[str, ...],
                    found: list[Input]) -> None:
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        found.append(Input(folder, relative, f"cannot list this folder ({exc.strerror or exc})"))
        return
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()  # follows a link: a linked folder is not an image file either
        except OSError:
            is_dir = False
        if is_dir:
            if recursive and not entry.is_symlink() and real_path(path) != out_real:
                subfolders.append(path)
        elif Path(entry.name).suffix.lower() in suffixes:
            found.append(Input(path, relative, path_problem(path), listed=True))
    for path in subfolders:
        _collect_folder(path, relative / path.name, recursive, out_real, suffixes, found)


def path_problem(path: Path) -> str | None:
    """Why ``path`` leads to nothing (missing, a symbolic link loop, a link to a missing file, a name the system
    refuses), or None."""
    try:
        os.stat(path)
        return None
    except OSError as exc:
        error = exc
    missing = error.errno in (errno.ENOENT, errno.ENOTDIR)
    if os.path.islink(path):
        if error.errno == errno.ELOOP:
            return "a symbolic link loop"
        if missing:
            return f"a broken symbolic link (to {os.readlink(path)}, which does not exist)"
    elif missing:
        return "no such file or folder"
    return f"cannot be read ({error.strerror or error})"


def real_path(path: Path) -> Path:
    """``path`` with its symbolic links resolved, as far as they lead (a loop is left as it is, never an error)."""
    return Path(os.path.realpath(path))


def output_of(item: Input, out: Path, ext: str, suffix: str) -> tuple[Path, str]:
    """The output file of ``item`` and its format (a key of ``FORMATS``)."""
    path = item.path
    fmt = EXTENSIONS[ext] or SUFFIX_FORMATS.get(path.suffix.lower(), "PNG")
    ending = path.suffix if ext == "same" and path.suffix.lower() in SUFFIX_FORMATS else FORMATS[fmt].suffix
    return out / item.folder / f"{path.stem}{suffix}{ending}", fmt


def suffix_problem(suffix: str) -> str | None:
    """Why ``suffix`` cannot end output names (it would lead out of the output folder), or None."""
    separators = [sep for sep in (os.sep, os.altsep) if sep and sep in suffix]
    if separators:
        return f"has a path separator ({separators[0]!r}); it must be part of a file name"
    if "\0" in suffix:
        return "has a NUL character; it must be part of a file name"
    return None


def earlier_outputs(files: list[Input], out: Path, ext: str, suffix: str) -> tuple[list[Input], list[Input]]:
    """(the inputs, the files left out): a file found in a folder that is also the output folder, and named as
    another input's output in this run (``photo_x2.png`` beside ``photo.png``), is an earlier run's output, not an
    input; upscaling it again would make ``photo_x2_x2.png``. Files named as arguments are always inputs."""
    usable = [item for item in files if item.problem is None]
    produced: dict[Path, Path] = {}
    for item in usable:
        produced.setdefault(real_path(output_of(item, out, ext, suffix)[0]), item.path)
    left_out = [item for item in usable if item.listed
                and produced.get(real_path(item.path), item.path) != item.path]
    return [item for item in files if item not in left_out], left_out


def plan(files: list[Input], out: Path, ext: str, suffix: str, output=output_of,
         inputs: set[Path] | None = None, kind: str = "image") -> list[Job]:
    """The output of each input (``output(item, out, ext, suffix)``: its path and format); two inputs with one
    output, or an output that is an input (of ``inputs``, default ``files``), are refused by name."""
    if inputs is None:
        inputs = {real_path(item.path) for item in files if item.problem is None}
    jobs: list[Job] = []
    claimed: dict[Path, Path] = {}
    for item in files:
        target, fmt = output(item, out, ext, suffix)
        job = Job(item.path, target, fmt, item.problem, kind)
        key = real_path(target)
        if job.problem is not None:
            pass
        elif key in claimed:
            job.problem = f"{claimed[key]} is also written to {target}: rename one of them (or use --suffix)"
        elif key in inputs:
            job.problem = f"its output {target} is an input of this run: choose another --out or --suffix"
        else:
            claimed[key] = item.path
        jobs.append(job)
    return jobs


def left_out_note(left_out: list[Input]) -> str:
    """The note naming the earlier outputs that ``earlier_outputs`` left out."""
    names = ", ".join(str(item.path) for item in left_out[:3]) + (", ..." if len(left_out) > 3 else "")
    return (f"note: left out {len(left_out)} file{'s' if len(left_out) > 1 else ''} of the output folder named as "
            f"outputs of this run (earlier outputs, not inputs): {names}")


def check_output_folder(out: Path) -> None:
    """An ``OutputFolderError`` unless ``out`` is (or can be made) a folder that files can be written in."""
    if os.path.islink(out) and (problem := path_problem(out)) is not None:
        raise OutputFolderError(f"output folder {out}: {problem}")
    try:
        if out.exists() and not out.is_dir():
            raise OutputFolderError(f"output folder {out} is a file")
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".wdsr-fast-write-check.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise OutputFolderError(f"cannot write into output folder {out}: {exc.strerror or exc}") from None


def backend_problem(upscaler: Upscaler, backend: str) -> str | None:
    """Why the backend asked for cannot take tensors on ``upscaler``'s device, or None. Checked once before a batch:
    the network would refuse every file (a backend that runs on the device but cannot run this model there, e.g. an
    extension not built, falls back to another backend with a warning instead)."""
    if backend == ops.AUTO:
        return None
    reason = ops.device_reason(backend, upscaler.device)
    return None if reason is None else f"{reason} (choose another --device, or --backend auto)"


def tile_pad_warning(upscaler: Upscaler) -> str | None:
    """Why ``upscaler``'s tiles may show at their seams (a pad below the receptive radius), or None."""
    radius = upscaler.config.receptive_radius
    if upscaler.tile is None or upscaler.tile_pad >= radius:
        return None
    return (f"a tile pad of {upscaler.tile_pad} pixels is below this network's receptive radius of {radius}: an "
            f"image cut into tiles can show their seams (the default pad, {radius}, makes tiling exact)")


@contextlib.contextmanager
def pixel_budget(max_pixels: int):
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels or None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


class OutputExists(FileExistsError):
    """The output exists already (and was not to be replaced)."""


def upscale_file(upscaler: Upscaler, job: Job, quality: int, replace: bool = True) -> str:
    """Read, upscale and write one file; the log line. Raises ImageError/UpscaleError/OSError/MemoryError;
    ``OutputExists`` before any work when the output exists and not ``replace``, ``FileExistsError`` when it
    appeared during the work. The temporary files of the output that killed runs left are removed first."""
    remove_leftovers(job.target)
    try:
        exists = bool(os.lstat(job.target))
    except FileNotFoundError:
        exists = False
    except OSError as exc:  # a name too long, a file where a folder should be: said before the work
        raise ImageError(f"{job.source}: cannot write {job.target}: {exc.strerror or exc}") from None
    if exists and not replace:
        raise OutputExists(f"{job.target} exists")
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


def failure_line(source: Path, exc: BaseException) -> str:
    """One line for a file that failed with ``exc``: the file, then the first line of the reason (which names the
    file itself in most errors of the readers and writers: not twice)."""
    if isinstance(exc, MemoryError):
        return f"{source}: out of host memory"
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return reason if reason.startswith(f"{source}:") else f"{source}: {reason}"


@dataclass
class Outcome:
    """One file's result: ``status`` is done, skipped or failed; ``line`` what the upscale command prints for it;
    ``frames`` a video's frames; ``seconds`` the time its work took; ``worker`` the Ray worker that did it."""
    source: str
    status: str
    line: str
    kind: str = "image"
    frames: int = 0
    seconds: float = 0.0
    worker: str = ""


def run_job(job: Job, work: Callable[[Job], tuple[str, int]]) -> Outcome:
    """One file as the upscale command runs it: ``work(job)`` upscales and writes it and gives its line and (a
    video's) frames; a problem known before, an output that exists and the errors of reading, upscaling and writing
    become the line the command prints, and the batch goes on."""
    source, kind = str(job.source), job.kind
    if job.problem is not None:
        return Outcome(source, "failed", f"error: {job.source}: {job.problem}", kind)
    start = time.perf_counter()
    try:
        line, frames = work(job)
        outcome = Outcome(source, "done", line, kind, frames)
    except OutputExists as exc:
        outcome = Outcome(source, "skipped", f"skipped {job.source}: {exc} (--overwrite replaces it)", kind)
    except FileExistsError as exc:  # appeared meanwhile (another run's, or a killed attempt's), and kept
        outcome = Outcome(source, "skipped", f"skipped {job.source}: {exc}", kind)
    except (MemoryError, ValueError, RuntimeError, OSError) as exc:  # ImageError, VideoError, UpscaleError among them
        outcome = Outcome(source, "failed", f"error: {failure_line(job.source, exc)}", kind)
    outcome.seconds = time.perf_counter() - start
    return outcome


def summary(outcomes: list[Outcome], kind: str, scale: int, out: Path) -> str:
    """The command's summary line for its images or its videos (``kind``)."""
    mine = [o for o in outcomes if o.kind == kind]
    done = [o for o in mine if o.status == "done"]
    skipped, failed = (sum(o.status == status for o in mine) for status in ("skipped", "failed"))
    frames, seconds = sum(o.frames for o in done), sum(o.seconds for o in done)
    rate = f" ({frames} frames, {frames / seconds:.3g} frames/s)" if frames and seconds > 0 else ""
    return (f"{len(done)} of {len(mine)} {kind}s upscaled x{scale} into {out}{rate}"
            + (f"; {skipped} skipped (output exists)" if skipped else "")
            + (f"; {failed} failed" if failed else ""))
