"""``wdsr-fast bench --video``: a video upscaled end to end against the network alone on the same frames.

A clip is made first (H.264 + AAC in MP4, BT.709 tags, a procedural scene: gradients, moving discs, a panned
fine texture) at the input size, and its frames decoded once into memory. Then, interleaved (each round runs both,
the one that went first going second in the next round, so that noise from other work on the machine falls on
both alike), for ``rounds`` rounds:
- ``network``: ``Upscaler.upscale_pixels`` over the decoded frames (``batch`` at a time): the call the video path
  makes for each frame, with nothing around it;
- ``end to end``: ``upscale_video_file`` of the clip (decoding, the network and encoding pipelined, audio copied,
  the file written and renamed), timed from the call to the finished file.
Both first run once on each batch shape (the backend set up and compiled for it), untimed. The frames per second
of each are the medians over the rounds; their ratio is what the pipeline keeps of the network's rate. The stage
that bounds the end-to-end rate is the busiest one (its busy time per frame measured inside the pipeline: decoding
and colour conversion; the network; colour conversion, encoding and muxing), the encoder named where it is that.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..inference.upscaler import Upscaler
from ..inference.video import STAGES, frames_per_batch, upscale_video_file
from ..io.atomic import write_text
from ..io.video import EncodeOptions, clip_frames, require_av
from .report import environment
from .rows import DTYPES


@dataclass(frozen=True)
class VideoBench:
    """What ``wdsr-fast bench --video`` measures."""
    device: str = "cpu"
    scale: int = 2
    out_w: int = 960
    out_h: int = 540
    frames: int = 10
    rounds: int = 5
    threads: int | None = None
    batch: int | None = None  # None: the upscale command's default (4 on a GPU, 1 on the CPU)
    half: bool = False
    codec: str | None = None
    weights: str | None = None
    out: Path | None = None

    @property
    def in_size(self) -> tuple[int, int]:
        if self.out_w % self.scale or self.out_h % self.scale:
            raise ValueError(f"output size {self.out_w}x{self.out_h} is not a multiple of the scale {self.scale}")
        return self.out_w // self.scale, self.out_h // self.scale


def scene(index: int, width: int, height: int, texture: np.ndarray) -> np.ndarray:
    """Frame ``index`` of the procedural scene: (height, width, 3) uint8."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = index / 24
    base = np.stack([96 + 64 * np.sin(x / width * 3 + t), 96 + 64 * np.cos(y / height * 2 - t),
                     128 + 48 * np.sin((x + y) / (width + height) * 5 + 2 * t)], axis=-1)
    for k in range(3):
        cx, cy = width * (0.2 + 0.3 * k) + 20 * np.sin(t + k), height * 0.5 + 30 * np.cos(1.3 * t + k)
        disc = ((x - cx) ** 2 + (y - cy) ** 2) < (height / (6 + k)) ** 2
        base[disc] = (220 - 60 * k, 60 + 70 * k, 90)
    shift = index * 2
    fine = texture[:height, shift:shift + width]
    return np.clip(base + fine[..., None], 0, 255).astype(np.uint8)


def make_clip(path: Path, width: int, height: int, frames: int, rate: int = 24) -> Path:
    """The benchmark's clip: H.264 (x264, CRF 18) + AAC in MP4, BT.709 tags."""
    av = require_av()
    rng = np.random.default_rng(0)
    texture = rng.normal(0, 12, (height, width + 2 * frames)).astype(np.float32)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "fast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        cc = video.codec_context
        cc.color_primaries = cc.color_trc = cc.colorspace = 1
        cc.color_range = 1
        sound = out.add_stream("aac", rate=48000)
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(scene(index, width, height, texture), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
            frame.pts, frame.time_base = index, Fraction(1, rate)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = 48000 * frames // rate
        for start in range(0, samples, 1024):
            count = min(1024, samples - start)
            tone = (0.2 * np.sin(2 * np.pi * 330 * np.arange(start, start + count) / 48000)).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


SHORT_DTYPES = {dtype: name for name, dtype in DTYPES.items()}  # torch.bfloat16 -> "bf16"


def run_video_benchmark(bench: VideoBench) -> dict:
    """Measure ``bench``; print the result and return it (also written to ``bench.out``/results.json if set)."""
    if bench.threads:
        torch.set_num_threads(bench.threads)
    width, height = bench.in_size
    upscaler = Upscaler(bench.weights, scale=bench.scale if bench.weights is None else None, device=bench.device,
                        half=bench.half)
    batch = frames_per_batch(upscaler, bench.batch)
    env = environment(upscaler.device)
    with tempfile.TemporaryDirectory() as folder:
        clip = make_clip(Path(folder) / "clip.mp4", width, height, bench.frames)
        frames = [pixels for pixels, _ in clip_frames(clip)]
        chunks = [frames[i:i + batch] for i in range(0, len(frames), batch)]  # as the pipeline batches them
        options = EncodeOptions(codec=bench.codec, container="mp4")

        def upscale(chunk: list[np.ndarray]) -> None:
            upscaler.upscale_pixels(np.stack(chunk) if len(chunk) > 1 else chunk[0])

        def network() -> float:
            start = time.perf_counter()
            for chunk in chunks:
                upscale(chunk)
            if upscaler.device.type == "cuda":
                torch.cuda.synchronize(upscaler.device)
            return time.perf_counter() - start

        ends: list = []

        def end_to_end() -> float:
            result = upscale_video_file(upscaler, clip, Path(folder) / "out.mp4", options, batch)
            ends.append(result)
            return result.seconds

        for chunk in {len(chunk): chunk for chunk in chunks}.values():  # warm-up: the backend set up, and
            upscale(chunk)                                                # compiled for each batch's shape
        print(f"video bench: {width}x{height} -> {bench.out_w}x{bench.out_h} x{bench.scale}, {len(frames)} frames, "
              f"{bench.rounds} rounds interleaved, {torch.get_num_threads()} torch threads on {env['device']} ...",
              file=sys.stderr, flush=True)
        times: dict[str, list[float]] = {"network": [], "end_to_end": []}
        for r in range(bench.rounds):
            order = [("network", network), ("end_to_end", end_to_end)]
            for name, call in order if r % 2 == 0 else order[::-1]:
                times[name].append(call())
    count = len(frames)
    fps = {name: count / statistics.median(values) for name, values in times.items()}
    busy = {stage: statistics.median(r.busy[stage] for r in ends) / count for stage in STAGES}
    if hasattr(os, "getloadavg"):
        env["load_average_at_end"] = os.getloadavg()
    result = {
        "bench": {**asdict(bench), "batch": batch, "out": str(bench.out) if bench.out else None, "in_w": width,
                  "in_h": height, "torch_threads": torch.get_num_threads(),
                  "dtype": SHORT_DTYPES[upscaler.dtype]},  # half: fp16 on a GPU, bf16 on a CPU that runs it
        "encoder": ends[-1].encoder, "frames": count,
        "network_fps": fps["network"], "end_to_end_fps": fps["end_to_end"],
        "ratio": fps["end_to_end"] / fps["network"],
        "busy_ms_per_frame": {stage: 1e3 * seconds for stage, seconds in busy.items()},
        "bound_by": max(busy, key=lambda s: busy[s]),
        "seconds": times, "environment": env,
    }
    print(format_video_result(result))
    if bench.out is not None:
        bench.out.mkdir(parents=True, exist_ok=True)
        write_text(bench.out / "results.json", json.dumps(result, indent=1))
    return result


def format_video_result(result: dict) -> str:
    b, busy = result["bench"], result["busy_ms_per_frame"]
    stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in busy.items())
    bound = result["bound_by"] + (f" ({result['encoder'].split()[0]})" if result["bound_by"] == "encode" else "")
    return "\n".join([
        f"{b['in_w']}x{b['in_h']} -> {b['out_w']}x{b['out_h']} (x{b['scale']}), {result['frames']} frames, batch "
        f"{b['batch']}, {b['dtype']}, {result['encoder']}, {b['torch_threads']} torch threads, "
        f"{result['environment']['device']}",
        f"network alone (Upscaler.upscale_pixels on the decoded frames): {result['network_fps']:.3g} frames/s",
        f"end to end (decode + network + encode, pipelined, file written): {result['end_to_end_fps']:.3g} frames/s"
        f" = {100 * result['ratio']:.1f}% of the network alone",
        f"stages, busy ms per frame end to end: {stages}; bound by {bound}",
    ])
