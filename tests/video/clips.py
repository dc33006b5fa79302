"""Tiny video clips made here with PyAV (no downloads), and what the tests read back from video files.

The pictures are a crop of scikit-image's astronaut photo panning across it, so that encoders see real texture
and motion; the sound is a 440 Hz tone; subtitles are two cues.
"""
from __future__ import annotations

import functools
import hashlib
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

BT709 = 1  # primaries, transfer and matrix tags


@functools.cache
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def picture(index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of the pan: (height, width, 3) uint8."""
    photo = astronaut()
    step = index % 100  # back and forth across the photo
    step = step if step < 50 else 100 - step
    top, left = 120 + step, 170 + 2 * step
    return photo[top:top + height, left:left + width].copy()


def deep_picture(index: int, width: int, height: int, bits: int) -> np.ndarray:
    """The same frame as 16-bit samples holding ``bits`` bits: a smooth version whose low bits carry information
    (not v * 257), scaled to the full 16-bit range as FFmpeg's rgb48 is."""
    rng = np.random.default_rng(index)
    smooth = picture(index, width, height).astype(np.float64) / 255 * (2**bits - 1)
    smooth += rng.uniform(-2, 2, smooth.shape)
    levels = np.clip(np.round(smooth), 0, 2**bits - 1)
    return np.round(levels * 65535 / (2**bits - 1)).astype(np.uint16)


def make_clip(path, codec: str = "libx264", pix_fmt: str = "yuv420p", width: int = 64, height: int = 48,
              frames: int = 12, rate: int = 24, pts: list[int] | None = None, time_base: Fraction | None = None,
              audio: bool = False, subtitles: bool = False, tags: bool = True, rotation: int | None = None,
              options: dict[str, str] | None = None, container: str | None = None, bits: int = 8,
              start: int = 0, colour: tuple[int, int, int] = (BT709, BT709, BT709)) -> Path:
    """A clip of ``frames`` frames. ``pts``: each frame's timestamp in ``time_base`` (variable frame rate);
    default 0, 1, 2... in 1/rate. ``tags``: the ``colour`` tags (primaries, transfer, matrix; default BT.709),
    limited range."""
    path = Path(path)
    out = av.open(str(path), "w", format=container)
    video = out.add_stream(codec, rate=rate, options=options or {})
    video.width, video.height, video.pix_fmt = width, height, pix_fmt
    time_base = time_base or Fraction(1, rate)
    video.time_base = time_base
    video.codec_context.time_base = time_base
    rgb = av.VideoFormat(pix_fmt).is_rgb
    if tags:
        cc = video.codec_context
        cc.color_primaries, cc.color_trc = colour[:2]
        cc.colorspace = 0 if rgb else colour[2]  # RGB: the identity matrix
        cc.color_range = 2 if rgb else 1
    if rotation is not None:
        video.set_display_rotation(rotation)
    sound = None
    if audio:
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "stereo"
        sound.metadata["language"] = "fra"
    text = None
    if subtitles:
        text = out.add_mux_stream("mov_text" if path.suffix in (".mp4", ".mov") else "subrip")
        text.time_base = Fraction(1, 1000)
        text.metadata["language"] = "eng"
    stamps = pts if pts is not None else [start + i for i in range(frames)]
    for index, stamp in enumerate(stamps):
        if bits > 8:
            frame = av.VideoFrame.from_ndarray(deep_picture(index, width, height, bits), format="rgb48le")
        else:
            frame = av.VideoFrame.from_ndarray(picture(index, width, height), format="rgb24")
        if not rgb:
            frame = frame.reformat(format=pix_fmt, dst_colorspace=colour[2] if tags else None, dst_color_range=1)
        else:
            frame = frame.reformat(format=pix_fmt)
        frame.pts, frame.time_base = stamp, time_base
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    if sound is not None:
        seconds = float((stamps[-1] + 1) * time_base) if pts is None else float(stamps[-1] * time_base) + 0.05
        total, done = int(48000 * seconds), 0
        while done < total:
            count = min(1024, total - done)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(done, done + count) / 48000)).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts = 48000, done
            out.mux(sound.encode(chunk))
            done += count
        out.mux(sound.encode(None))
    if text is not None:
        for k, cue in enumerate(["Houston, we have a picture.", "Twice as sharp."]):
            payload = cue.encode()
            if path.suffix in (".mp4", ".mov"):  # a 3GPP timed text sample: its length, then the text
                payload = struct.pack(">H", len(payload)) + payload
            packet = av.Packet(payload)
            packet.stream = text
            packet.time_base = Fraction(1, 1000)
            packet.pts = packet.dts = 100 + 200 * k
            packet.duration = 150
            out.mux(packet)
    out.close()
    return path


def decoded(path, fmt: str = "rgb24") -> list:
    """The first video stream's frames as PyAV decodes them (no conversion)."""
    with av.open(str(path)) as container:
        return list(container.decode(container.streams.video[0]))


def frame_times(path) -> list[float]:
    """Each frame's presentation time in seconds."""
    return [float(f.pts * f.time_base) for f in decoded(path)]


def stream_end(path) -> float:
    """The video stream's end: the last frame's time plus its duration, in seconds."""
    frames = decoded(path)
    last = frames[-1]
    return float((last.pts + last.duration) * last.time_base)


def packets(path, kind: str) -> list[tuple[float, float, str]]:
    """(time, duration in seconds, digest of the data) of every packet of the first ``kind`` stream (audio,
    subtitle), empty MP4 text samples (the muxer's fillers between cues) left out."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, {"audio": "audio", "subtitle": "subtitles"}[kind])[0]
        found = []
        for packet in container.demux(stream):
            if not packet.size or bytes(packet) == b"\0\0":
                continue
            found.append((float(packet.pts * packet.time_base), float(packet.duration * packet.time_base),
                          hashlib.sha1(bytes(packet)).hexdigest()))
        return found


def tags(path) -> tuple[int, int, int, int]:
    """(primaries, transfer, matrix, range) of the first decoded frame."""
    first = decoded(path)[0]
    return first.color_primaries, first.color_trc, first.colorspace, first.color_range


def hdr10_side_data(path) -> tuple[tuple[int, ...] | None, tuple[int, int] | None]:
    """The raw HDR10 side data of the first decoded frame: FFmpeg's AVMasteringDisplayMetadata (10 rationals as
    numerator, denominator pairs, then has_primaries, has_luminance) and AVContentLightMetadata (MaxCLL, MaxFALL);
    None for what it lacks."""
    mastering = light = None
    for side in decoded(path)[0].side_data:
        if side.type.name == "MASTERING_DISPLAY_METADATA":
            mastering = struct.unpack_from("<22i", bytes(side))
        elif side.type.name == "CONTENT_LIGHT_LEVEL":
            light = struct.unpack_from("<2I", bytes(side))
    return mastering, light
