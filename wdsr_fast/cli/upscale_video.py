"""The video part of ``wdsr-fast upscale`` (see README, "Upscaling video"): its options, and the loop over the
video files of a run, one line per video (what was read and written, or why it failed) and a frame bar for each.
"""
from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ..inference.files import Job, Outcome, run_job, summary
from ..inference.upscaler import Upscaler
from ..inference.video import frames_per_batch, upscale_video_job
from ..io.video import ENCODERS, EncodeOptions, VideoError, VideoInfo, require_av


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


def run_videos(args: argparse.Namespace, upscaler: Upscaler, jobs: list[Job]) -> list[Outcome]:
    """Upscale the videos of a run, each with a line on stderr and a frame bar, then their summary line."""
    try:
        require_av()
    except VideoError as exc:
        tqdm.write(f"error: {len(jobs)} video file(s) not upscaled ({jobs[0].source}"
                   f"{', ...' if len(jobs) > 1 else ''}): {exc}", file=sys.stderr)
        return [Outcome(str(job.source), "failed", str(exc), "video") for job in jobs]
    batch = frames_per_batch(upscaler, args.batch)
    outcomes = []
    tile_bars, upscaler.progress = upscaler.progress, False  # a frame bar instead of one tile bar per frame
    try:
        for job in jobs:
            bar = FrameBar(job.source.name)

            def video(job: Job, bar: FrameBar = bar) -> tuple[str, int]:
                options = EncodeOptions(args.codec, args.crf, args.preset, job.fmt)
                return upscale_video_job(upscaler, job, options, batch, args.overwrite, bar.start, bar.update)

            try:
                outcomes.append(run_job(job, video))
            finally:
                bar.close()
            tqdm.write(outcomes[-1].line, file=sys.stderr)
    finally:
        upscaler.progress = tile_bars
    print(summary(outcomes, "video", upscaler.scale, args.out))
    return outcomes
