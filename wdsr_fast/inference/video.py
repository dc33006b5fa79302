"""Upscaling video files: decode, upscale and encode run at once, in three threads joined by bounded queues.

The reader thread decodes the first video stream to RGB frames (``io.video.VideoReader``) and passes them, with
the packets of the audio and subtitle streams, to the calling thread, which upscales frames with
``Upscaler.upscale_pixels`` (one frame, or ``batch`` frames of one size together) - the path every image takes -
and passes them on to the writer thread, which encodes them at their own timestamps and remuxes the packets
(``io.video.VideoWriter``). Each queue holds at most ``2 * batch + 2`` items, so memory stays bounded whatever
the length of the video, and a stage that stops (an error, Ctrl-C) stops the others within a tenth of a second.

The file is written to a temporary file beside the output and renamed into place only when complete
(``io.atomic``): an interrupted or failed video leaves no file under the output's name.

Each stage's busy time (decoding and colour conversion; the network; colour conversion, encoding and muxing) is
measured; the busiest stage is the one that bounds the rate (``VideoResult.bound``).
"""
from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_path, remove_leftovers
from ..io.images import IMAGE_SUFFIXES
from ..io.video import (
    CONTAINERS,
    VIDEO_SUFFIXES,
    EncodeOptions,
    Frame,
    VideoError,
    VideoInfo,
    VideoReader,
    VideoWriter,
    choose_encoder,
    describe_streams,
    is_ffmpeg_error,
    is_video,
    output_container,
)
from .files import Input, Job, OutputExists, earlier_outputs, plan, real_path
from .upscaler import Upscaler

STAGES = ("decode", "upscale", "encode")
UPSCALE_SUFFIXES = IMAGE_SUFFIXES + VIDEO_SUFFIXES  # the files the upscale command takes from folders
NOTHING_FOUND = (f"no images ({', '.join(IMAGE_SUFFIXES)}) or videos ({', '.join(VIDEO_SUFFIXES)}) found in the "
                 f"inputs")
POLL_S = 0.1  # how often a waiting stage looks whether another one has stopped


class _Stopped(Exception):
    """Another stage stopped: this one stops too."""


@dataclass
class _Failure:
    error: BaseException


_END = object()


@dataclass
class VideoResult:
    """One upscaled video: what was read, what was written, and how fast each stage went."""
    source: Path
    target: Path
    info: VideoInfo
    encoder: str                     # e.g. "libx264 yuv420p 960x540 crf 17"
    frames: int
    seconds: float                   # wall time of the pipeline
    busy: dict[str, float]           # seconds each stage worked (not waiting on the others)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the input had and the output has not

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def bound(self) -> str:
        """The stage that bounds the rate: the one that worked longest."""
        return max(STAGES, key=lambda s: self.busy.get(s, 0.0))

    def line(self) -> str:
        """The log line: ``src -> dst (what was read -> what was written; notes) in 12.3 s, 9.8 frames/s``."""
        notes = "".join(f"; {n}" for n in self.notes)
        return (f"{self.source} -> {self.target} ({self.info.describe()} -> {self.encoder}, {self.frames} frames"
                f"{notes}) in {self.seconds:.1f} s, {self.fps:.3g} frames/s, bound by {self.bound}")


class _Stages:
    """The queues between the stages and the flag that stops them all."""

    def __init__(self, depth: int):
        self.decoded: queue.Queue = queue.Queue(maxsize=depth)
        self.upscaled: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.busy = dict.fromkeys(STAGES, 0.0)

    def put(self, q: queue.Queue, item) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue):
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue


def _read(reader: VideoReader, stages: _Stages) -> None:
    try:
        start = time.perf_counter()
        for item in reader.items():
            stages.busy["decode"] += time.perf_counter() - start
            stages.put(stages.decoded, item)
            start = time.perf_counter()
        stages.put(stages.decoded, _END)
    except _Stopped:
        return
    except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
        with contextlib.suppress(_Stopped):
            stages.put(stages.decoded, _Failure(exc))


def _write(writer: VideoWriter, stages: _Stages, errors: list[BaseException],
           on_frame: Callable[[int], object] | None) -> None:
    try:
        while True:
            item = stages.get(stages.upscaled)
            start = time.perf_counter()
            if item is _END:
                writer.finish()
                stages.busy["encode"] += time.perf_counter() - start
                return
            if isinstance(item, Frame):
                writer.write(item)
                stages.busy["encode"] += time.perf_counter() - start
                if on_frame is not None:
                    on_frame(1)
            else:
                writer.copy(item)
                stages.busy["encode"] += time.perf_counter() - start
    except _Stopped:
        return
    except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
        errors.append(exc)
        stages.stop.set()


def run_pipeline(reader: VideoReader, writer: VideoWriter, upscale: Callable[[np.ndarray], np.ndarray],
                 batch: int = 1, on_frame: Callable[[int], object] | None = None) -> tuple[int, dict[str, float]]:
    """Decode ``reader``, ``upscale`` each frame's pixels ((H, W, C), or (N, H, W, C) with ``batch`` > 1) in
    this thread, and encode into ``writer`` (finished when all went well); (frames, busy seconds per stage).
    ``on_frame(1)`` is called from the writer thread after each frame is encoded."""
    stages = _Stages(2 * batch + 2)
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_read, args=(reader, stages), name="wdsr-video-decode", daemon=True),
               threading.Thread(target=_write, args=(writer, stages, errors, on_frame), name="wdsr-video-encode",
                                daemon=True)]
    for thread in threads:
        thread.start()
    frames = 0
    pending: list[Frame] = []

    def flush() -> None:
        nonlocal frames
        if not pending:
            return
        start = time.perf_counter()
        if len(pending) == 1:
            outs = [upscale(pending[0].pixels)]
        else:
            outs = list(upscale(np.stack([f.pixels for f in pending])))
        stages.busy["upscale"] += time.perf_counter() - start
        for frame, pixels in zip(pending, outs, strict=True):
            stages.put(stages.upscaled, Frame(pixels, frame.pts, frame.duration))
        frames += len(pending)
        pending.clear()

    try:
        while True:
            item = stages.get(stages.decoded)
            if isinstance(item, _Failure):
                raise item.error
            if item is _END:
                flush()
                stages.put(stages.upscaled, _END)
                break
            if isinstance(item, Frame):
                pending.append(item)
                if len(pending) >= batch:
                    flush()
            else:
                stages.put(stages.upscaled, item)
        while threads[1].is_alive():  # the encoder's flush and the file's index
            threads[1].join(POLL_S)
    except _Stopped:
        pass
    finally:
        if any(thread.is_alive() for thread in threads):
            stages.stop.set()  # this thread failed or was interrupted: the others stop too
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return frames, stages.busy


def upscale_video_file(upscaler: Upscaler, source, target, options: EncodeOptions | None = None,
                       batch: int = 1, replace: bool = True,
                       on_start: Callable[[VideoInfo], object] | None = None,
                       on_frame: Callable[[int], object] | None = None) -> VideoResult:
    """Upscale the video file ``source`` into ``target`` (its container: ``options.container``, "same" for
    the input's). ``on_start(info)`` is called once the input is open (e.g. to size a progress bar).
    Raises ``VideoError`` (bad input, an encoder that cannot keep it), ``UpscaleError``, ``FileExistsError``
    (``replace=False`` and the target appeared meanwhile) and ``OSError``."""
    source, target = Path(source), Path(target)
    options = options or EncodeOptions()
    container = options.container if options.container != "same" else output_container(source, "same")[0]
    if container not in CONTAINERS:
        raise ValueError(f"container must be one of {sorted(CONTAINERS)} or 'same', got {options.container!r}")
    with VideoReader(source) as reader:
        info = reader.info
        encoder = choose_encoder(info, options, container)
        if on_start is not None:
            on_start(info)
        start = time.perf_counter()
        with atomic_path(target, replace) as tmp:
            try:
                writer = VideoWriter(tmp, reader, upscaler.scale, options, container, encoder)
                try:
                    frames, busy = run_pipeline(reader, writer, upscaler.upscale_pixels, batch, on_frame)
                finally:
                    writer.close()
            except Exception as exc:
                if not is_ffmpeg_error(exc):
                    raise
                raise VideoError(f"{source}: writing {target.name} with {encoder} failed ({exc})") from None
        seconds = time.perf_counter() - start
    notes = [*writer.notes, *describe_streams(info)]
    if info.colour.assumed:
        notes.append(info.colour.assumed)
    if info.rotation:
        notes.append(f"rotation {info.rotation} degrees kept")
    if info.bits > 8:
        notes.append(f"{info.bits}-bit kept (16-bit path)")
    return VideoResult(source, target, info, writer.describe, frames, seconds, busy, notes, writer.warnings)


def upscale_video(source, target, upscaler: Upscaler | None = None, *, codec: str | None = None,
                  crf: int | None = None, preset: str | None = None, batch: int | None = None,
                  overwrite: bool = True, progress: bool = False, **upscaler_options: Any) -> VideoResult:
    """Upscale one video file in one call: every frame of its first video stream through the network, audio and
    subtitles copied, timestamps, colour tags, HDR10 metadata, rotation and bit depth kept (README, "Upscaling
    video").

    target: the output file; its suffix picks the container (.mp4, .mkv, .webm, .mov). upscaler: an ``Upscaler``,
    or None to make one from ``upscaler_options`` (``weights``, ``scale``, ``device``, ``half``, ``tile``,
    ``backend``...). codec: an encoder (libx264, libx265, libvpx-vp9, libsvtav1, ffv1, h264_nvenc...; default:
    the input's codec family), crf and preset: its quality and speed. batch: frames through the network together
    (default: ``default_batch``). progress: a tqdm bar over the frames. What the output cannot keep of the input
    (``VideoResult.warnings``) is also issued as a ``UserWarning``.
    """
    target = Path(target)
    container = target.suffix.lower().lstrip(".")
    if container not in CONTAINERS:
        raise VideoError(f"{target}: the output's suffix must be one of "
                         f"{', '.join('.' + c for c in CONTAINERS)}")
    if upscaler is None:
        upscaler = Upscaler(**upscaler_options)
    elif upscaler_options:
        raise TypeError(f"pass either an upscaler or its options, not both ({', '.join(upscaler_options)})")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="frame", desc=Path(source).name)

    def start(info: VideoInfo) -> None:
        if bar is not None:
            bar.reset(total=info.frames)

    try:
        result = upscale_video_file(upscaler, source, target, EncodeOptions(codec, crf, preset, container),
                                    frames_per_batch(upscaler, batch), overwrite, start,
                                    bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    for text in result.warnings:
        warnings.warn(f"{source}: {text}", stacklevel=2)
    return result


def default_batch(upscaler: Upscaler) -> int:
    """Frames through the network together unless told: 4 on a GPU (fewer, larger launches), 1 on the CPU (where
    a batch runs no faster)."""
    return 4 if upscaler.device.type == "cuda" else 1


# -- the upscale command's batch --------------------------------------------------------------------------

def image_ext(ext: str) -> str:
    """The image format of --ext: a video container there leaves images at the default, PNG."""
    return "png" if ext in CONTAINERS else ext


def video_ext(ext: str) -> str:
    """The container of --ext: an image format there leaves videos in their own container."""
    return ext if ext in CONTAINERS else "same"


def split_videos(files: list[Input]) -> tuple[list[Input], list[Input]]:
    """(images, videos) of the upscale command's inputs, by suffix."""
    return [f for f in files if not is_video(f.path)], [f for f in files if is_video(f.path)]


def video_output(item: Input, out: Path, ext: str, suffix: str) -> tuple[Path, str]:
    """The output file of the video ``item`` and its container's --ext name."""
    container, ending = output_container(item.path, ext)
    return out / item.folder / f"{item.path.stem}{suffix}{ending}", container


def plan_videos(files: list[Input], out: Path, ext: str, suffix: str, inputs: set[Path] | None = None) -> list[Job]:
    """The output of each video (``Job.fmt``: the container's --ext name); two videos with one output, or an
    output that is an input (of ``inputs``: all the command's files), are refused by name."""
    return plan(files, out, ext, suffix, output=video_output, inputs=inputs, kind="video")


def plan_upscale(found: list[Input], out: Path, ext: str, suffix: str) -> tuple[list[Job], list[Job], list[Input]]:
    """The upscale command's jobs for the files it found: (images, videos, the earlier outputs left out)."""
    found, left_out = earlier_outputs(found, out, image_ext(ext), suffix)
    images, videos = split_videos(found)
    inputs = {real_path(item.path) for item in found if item.problem is None}
    return (plan(images, out, image_ext(ext), suffix), plan_videos(videos, out, video_ext(ext), suffix, inputs),
            left_out)


def frames_per_batch(upscaler: Upscaler, batch: int | None) -> int:
    """``batch``, or the default (``default_batch``)."""
    return batch or default_batch(upscaler)


def upscale_video_job(upscaler: Upscaler, job: Job, options: EncodeOptions, batch: int = 1, replace: bool = True,
                      on_start: Callable[[VideoInfo], object] | None = None,
                      on_frame: Callable[[int], object] | None = None) -> tuple[str, int]:
    """One video of the upscale command, as ``files.upscale_file`` is one image: (its lines: a warning for what the
    output could not keep, then the result; its frames). The temporary files that killed runs left are removed
    first; ``OutputExists`` before any work when the output exists and not ``replace``."""
    remove_leftovers(job.target)
    if os.path.lexists(job.target) and not replace:
        raise OutputExists(f"{job.target} exists")
    result = upscale_video_file(upscaler, job.source, job.target, options, batch, replace, on_start, on_frame)
    warnings = [f"warning: {job.source}: {text}" for text in result.warnings]
    return "\n".join([*warnings, result.line()]), result.frames
