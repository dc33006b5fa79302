"""The video part of ``wdsr-fast upscale`` (see README, "Upscaling video"): its options, and the loop over the
video files of a run, one line per video (what was read and written, or why it failed) and a frame bar for each.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..inference.files import Input, failure_line
from ..inference.upscaler import UpscaleError, Upscaler
from ..inference.video import default_batch, plan_videos, upscale_video_file
from ..io.atomic import remove_leftovers
from ..io.video import CONTAINERS, ENCODERS, EncodeOptions, VideoError, VideoInfo, require_av


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("video", "videos (.mp4 .mkv .webm .mov .avi .ts ...): every frame of the "
                                               "first video stream upscaled, audio and subtitles copied")
    group.add_argument("--codec", choices=ENCODERS,
                       help="video encoder (default: the input's codec family: H.264 -> libx264, HEVC -> libx265, "
                            "VP9 -> libvpx-vp9, AV1 -> libsvtav1, FFV1 -> ffv1; others libx264); ffv1 is lossless, "
                            "*_nvenc need an NVIDIA GPU")
    group.add_argument("--crf", type=_non_negative,
                       help="constant quality, lower is better (default: visually lossless: x264 17, x265 20, "
                            "VP9 20, SVT-AV1 22, NVENC cq 19)")
    group.add_argument("--preset", help="encoder speed: x264/x265 ultrafast..veryslow (default medium), SVT-AV1 "
                                        "0-13 (8), VP9 cpu-used 0-8 (4), NVENC p1-p7 (p5)")
    group.add_argument("--batch", type=_positive,
                       help="frames through the network together (default: 4 on a GPU, 1 on CPU)")


def image_ext(ext: str) -> str:
    """The image format of --ext: a video container there leaves images at the default, PNG."""
    return "png" if ext in CONTAINERS else ext


def video_ext(ext: str) -> str:
    """The container of --ext: an image format there leaves videos in their own container."""
    return ext if ext in CONTAINERS else "same"


class FrameBar:
    """A bar over a video's frames (rate and time left), made once the video is open: its frame count sizes it."""

    def __init__(self, name: str):
        self.name, self.bar = name, None

    def start(self, info: VideoInfo) -> None:
        self.bar = tqdm(total=info.frames, desc=self.name, unit="frame", file=sys.stderr, leave=False,
                        dynamic_ncols=True)

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_videos(args: argparse.Namespace, upscaler: Upscaler, videos: list[Input], suffix: str,
               inputs: set[Path]) -> tuple[int, int, int]:
    """Upscale the videos of a run; (done, skipped, failed). Each gets one line on stderr."""
    jobs = plan_videos(videos, args.out, video_ext(args.ext), suffix, inputs)
    try:
        require_av()
    except VideoError as exc:
        tqdm.write(f"error: {len(jobs)} video file(s) not upscaled ({jobs[0].source}"
                   f"{', ...' if len(jobs) > 1 else ''}): {exc}", file=sys.stderr)
        return 0, 0, len(jobs)
    batch = args.batch or default_batch(upscaler)
    done, skipped, failed, frames, seconds = 0, 0, 0, 0, 0.0
    tile_bars, upscaler.progress = upscaler.progress, False  # a frame bar instead of one tile bar per frame
    try:
        for job in jobs:
            if job.problem is not None:
                failed += 1
                tqdm.write(f"error: {job.source}: {job.problem}", file=sys.stderr)
                continue
            remove_leftovers(job.target)
            if job.target.exists() and not args.overwrite:
                skipped += 1
                tqdm.write(f"skipped {job.source}: {job.target} exists (--overwrite replaces it)", file=sys.stderr)
                continue
            options = EncodeOptions(args.codec, args.crf, args.preset, job.fmt)
            bar = FrameBar(job.source.name)
            try:
                result = upscale_video_file(upscaler, job.source, job.target, options, batch, args.overwrite,
                                            on_start=bar.start, on_frame=bar.update)
                bar.close()
                for text in result.warnings:
                    tqdm.write(f"warning: {job.source}: {text}", file=sys.stderr)
                tqdm.write(result.line(), file=sys.stderr)
                done += 1
                frames += result.frames
                seconds += result.seconds
            except FileExistsError as exc:
                skipped += 1
                tqdm.write(f"skipped {job.source}: {exc}", file=sys.stderr)
            except (VideoError, UpscaleError) as exc:
                failed += 1
                text = str(exc)
                tqdm.write(f"error: {text if text.startswith(str(job.source)) else f'{job.source}: {text}'}",
                           file=sys.stderr)
            except (MemoryError, ValueError, RuntimeError, OSError) as exc:
                failed += 1
                tqdm.write(f"error: {failure_line(job.source, exc)}", file=sys.stderr)
            finally:
                bar.close()
    finally:
        upscaler.progress = tile_bars
    rate = f" ({frames} frames, {frames / seconds:.3g} frames/s)" if frames and seconds > 0 else ""
    print(f"{done} of {len(jobs)} videos upscaled x{upscaler.scale} into {args.out}{rate}"
          + (f"; {skipped} skipped (output exists)" if skipped else "")
          + (f"; {failed} failed" if failed else ""))
    return done, skipped, failed
