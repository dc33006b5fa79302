"""Video files in and out through PyAV: the first video stream decoded to RGB frames (8 or 16 bits per sample) in
display order with their timestamps, and written back encoded, every other stream copied packet by packet.

No network here: ``VideoReader`` yields the frames of the first video stream as (H, W, 3) uint8 or uint16 RGB
arrays with their presentation timestamps and durations, and the packets of the streams that are copied (audio,
subtitles), in file order. ``VideoWriter`` encodes RGB frames of another size with the same timestamps, colour
tags, rotation, sample aspect ratio and bit depth, and remuxes the copied packets untouched.

Colour: YUV is converted to RGB with the stream's own matrix and range (untagged video: BT.709 from 720 lines
up, BT.601 below, as players assume; the output is then tagged with the assumed matrix, since a player would
otherwise guess from the larger output size), and back with the same ones, through FFmpeg's swscale with
accurate rounding and full chroma interpolation (without those flags swscale's 4:2:0 conversions shift colours
by one to two levels). Samples deeper than 8 bits are converted to 16-bit RGB (rgb48) and back to the input's
depth; an encoder that cannot write that depth is refused, never rounded to 8 bits.

PyAV (``pip install 'wdsr-fast[video]'``) is imported when a video is opened, so that images work without it.
"""
from __future__ import annotations

import contextlib
import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg",
                  ".wmv", ".flv", ".ogv", ".3gp")
# --ext: the container written, FFmpeg's name for it.
CONTAINERS = {"mp4": "mp4", "mkv": "matroska", "webm": "webm", "mov": "mov"}
SAME_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "mkv", ".webm": "webm", ".mov": "mov"}
FALLBACK_CONTAINER = "mkv"  # 'same' for an input container that is not written here (AVI, MPEG-TS, ...)

# The input's codec family -> the encoder that writes it; other codecs are written with FALLBACK_ENCODER.
FAMILY_ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1", "ffv1": "ffv1"}
FALLBACK_ENCODER = {"webm": "libvpx-vp9"}  # by container; otherwise libx264
ENCODERS = ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "ffv1", "h264_nvenc", "hevc_nvenc", "av1_nvenc")
# Default constant-quality levels, visually lossless: x264's CRF 17 is the usual "transparent" level, and the
# other scales are set to match it (x265's CRF runs about 3 higher for the same quality, VP9's and SVT-AV1's
# 0-63 scales higher again); NVENC's constant quality (cq) is set like x264's CRF. ffv1 is lossless.
DEFAULT_CRF = {"libx264": 17, "libx265": 20, "libvpx-vp9": 20, "libsvtav1": 22, "h264_nvenc": 19,
               "hevc_nvenc": 19, "av1_nvenc": 19}
CRF_RANGE = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, "libsvtav1": 63, "h264_nvenc": 51,
             "hevc_nvenc": 51, "av1_nvenc": 63}
CODEC_NAMES = {"h264": "H.264", "hevc": "HEVC", "vp9": "VP9", "av1": "AV1", "ffv1": "FFV1", "mpeg4": "MPEG-4",
               "mpeg2video": "MPEG-2", "prores": "ProRes", "vp8": "VP8"}

# swscale: accurate rounding and full chroma interpolation both ways (see the module docstring).
SWS_FLAGS_NAMES = ("BICUBIC", "ACCURATE_RND", "FULL_CHR_H_INT", "FULL_CHR_H_INP")
# AVColorSpace (the stream's matrix tag) -> swscale's colour space constant, where swscale has one.
SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
MATRIX_NAMES = {0: "RGB", 1: "BT.709", 2: "unspecified", 4: "FCC", 5: "BT.601 (BT.470BG)", 6: "BT.601 (SMPTE 170M)",
                7: "SMPTE 240M", 8: "YCgCo", 9: "BT.2020 NCL", 10: "BT.2020 CL", 14: "ICtCp"}
BT709, BT601 = 1, 6
RANGE_LIMITED, RANGE_FULL = 1, 2
FIELD_ORDERS = {2: "top field first", 3: "bottom field first", 4: "top field coded first, bottom displayed first",
                5: "bottom field coded first, top displayed first"}


class VideoError(ValueError):
    """A video file that cannot be read or written as asked, with the reason."""


def require_av():
    """The ``av`` module (PyAV), or a ``VideoError`` saying how to install it."""
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV: pip install 'wdsr-fast[video]'") from None
    return av


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_ffmpeg_error(exc: BaseException) -> bool:
    """An error PyAV raised for FFmpeg (an encoder or muxer that failed)."""
    return type(exc).__module__.split(".")[0] == "av"


def _sws_flags() -> int:
    from av.video.reformatter import Interpolation

    flags = 0
    for name in SWS_FLAGS_NAMES:
        flags |= int(getattr(Interpolation, name))
    return flags


def codec_name(name: str) -> str:
    return CODEC_NAMES.get(name, name)


# -- what a stream holds -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Colour:
    """A video's colour description: the four tags (FFmpeg's enum values) and how YUV is converted."""
    primaries: int
    transfer: int
    matrix: int           # the tag (AVColorSpace)
    range: int            # the tag (AVColorRange): 0 unspecified, 1 limited, 2 full
    sws_matrix: int       # what the conversion uses (swscale's constant)
    full_range: bool      # what the conversion uses
    assumed: str | None = None  # what was assumed for an untagged stream, said in the log line


def colour_of(frame, stream_context, rgb: bool) -> Colour:
    """The colour tags of the first decoded frame (the stream's where the frame has none) and the conversion
    they call for."""
    def tag(name: str) -> int:
        value = int(getattr(frame, name) or 0)
        if value in (0, 2) and name != "color_range":  # unspecified on the frame: the container's may say more
            value = int(getattr(stream_context, name, 0) or 0) or value
        return value

    primaries, transfer = tag("color_primaries"), tag("color_trc")
    matrix, colour_range = tag("colorspace"), int(frame.color_range or stream_context.color_range or 0)
    full = colour_range == RANGE_FULL or frame.format.name.startswith("yuvj") or rgb
    assumed = None
    if rgb:
        sws = SWS_MATRIX[BT709]
    elif matrix in SWS_MATRIX:
        sws = SWS_MATRIX[matrix]
    else:
        guess = BT709 if frame.height >= 720 else BT601
        assumed = (f"untagged colour matrix: {MATRIX_NAMES[guess]} assumed ({frame.height} lines), and tagged"
                   if matrix in (0, 2) else f"colour matrix {MATRIX_NAMES.get(matrix, matrix)} converted as "
                                           f"{MATRIX_NAMES[guess]}, and tagged so")
        sws, matrix = SWS_MATRIX[guess], guess
    return Colour(primaries, transfer, matrix, colour_range, sws, full, assumed)


@dataclass(frozen=True)
class HDR10:
    """HDR10 static metadata, as FFmpeg puts it on decoded frames (from the bitstream's SEI or metadata OBUs, or
    from the container's boxes): the mastering display's colour volume (SMPTE ST 2086: CIE 1931 x, y of its
    primaries and white point, its luminance range in cd/m2) and the content light level (CTA-861.3, cd/m2)."""
    mastering: tuple[Fraction, ...] | None  # red x, y, green x, y, blue x, y, white x, y, min, max luminance
    light_level: tuple[int, int] | None     # MaxCLL, MaxFALL
    partial: bool = False                   # mastering display metadata without its primaries or its luminance
    dynamic: tuple[str, ...] = ()           # the dynamic metadata the frames also have (HDR10+, Dolby Vision), not kept

    def describe(self) -> str:
        parts = []
        if self.mastering:
            parts.append(f"mastering display {float(self.mastering[9]):g}/{float(self.mastering[8]):g} cd/m2")
        if self.light_level:
            parts.append(f"MaxCLL {self.light_level[0]}, MaxFALL {self.light_level[1]}")
        return ", ".join(parts)


# Frame side data of dynamic HDR metadata -> its name.
DYNAMIC_HDR = {"DYNAMIC_HDR_PLUS": "HDR10+", "DOVI_RPU_BUFFER": "Dolby Vision", "DOVI_METADATA": "Dolby Vision",
               "DYNAMIC_HDR_VIVID": "HDR Vivid"}


def hdr10_of(frame) -> HDR10 | None:
    """The HDR10 static metadata on a decoded frame (and the names of its dynamic metadata), None where it has
    none."""
    mastering, light, partial, dynamic = None, None, False, []
    for side in frame.side_data:
        kind, data = str(side.type), bytes(side)
        dynamic += [name for key, name in DYNAMIC_HDR.items() if key in kind and name not in dynamic]
        if "MASTERING_DISPLAY_METADATA" in kind:  # AVMasteringDisplayMetadata: 10 AVRationals, 2 flags
            values = struct.unpack_from("<22i", data)
            has_primaries, has_luminance = values[20:22]
            if has_primaries and has_luminance:
                mastering = tuple(Fraction(values[i], values[i + 1]) for i in range(0, 20, 2))
            partial = bool(has_primaries) != bool(has_luminance)
        elif "CONTENT_LIGHT_LEVEL" in kind:  # AVContentLightMetadata: two unsigned ints
            light = struct.unpack_from("<2I", data)
    if mastering is None and light is None and not partial and not dynamic:
        return None
    return HDR10(mastering, light, partial, tuple(dynamic))


# Encoders given HDR10 metadata through their own parameters (PyAV can set neither frame side data nor a stream's
# coded side data, which the others read it from): -> (the option holding their parameters, mastering display
# and light level parameter names, the chromaticity and luminance units of their mastering display string).
HDR10_PARAMS = {"libx265": ("x265-params", "master-display", "max-cll", 50000, 10000),
                "libx264": ("x264-params", "mastering-display", "cll", 50000, 10000),
                "libsvtav1": ("svtav1-params", "mastering-display", "content-light", None, None)}


def hdr10_options(encoder: str, hdr: HDR10) -> dict[str, str] | None:
    """The options that make ``encoder`` write ``hdr`` into its bitstream (SEI for x265 and x264, metadata OBUs for
    SVT-AV1), None for an encoder that cannot be given it here."""
    if encoder not in HDR10_PARAMS:
        return None
    option, mastering_name, light_name, chroma, luma = HDR10_PARAMS[encoder]

    def number(value: Fraction, unit: int | None) -> str:
        return str(round(value * unit)) if unit else f"{float(value):.6f}"  # SVT-AV1 takes decimals

    params = []
    if hdr.mastering:
        rx, ry, gx, gy, bx, by, wx, wy = (number(v, chroma) for v in hdr.mastering[:8])
        low, high = (number(v, luma) for v in hdr.mastering[8:])
        params.append(f"{mastering_name}=G({gx},{gy})B({bx},{by})R({rx},{ry})WP({wx},{wy})L({high},{low})")
    if hdr.light_level:
        params.append(f"{light_name}={hdr.light_level[0]},{hdr.light_level[1]}")
    return {option: ":".join(params)}


def format_traits(name: str) -> tuple[int, bool, tuple[int, int], bool]:
    """(bits per sample, RGB, chroma subsampling (x, y) as log2 factors, has alpha) of a pixel format."""
    av = require_av()
    fmt = av.VideoFormat(name, 64, 64)
    comps = fmt.components
    chroma = [c for c in comps if c.is_chroma]
    sub = (0, 0) if not chroma or fmt.is_rgb else ((64 // chroma[0].width).bit_length() - 1,
                                                    (64 // chroma[0].height).bit_length() - 1)
    return max(c.bits for c in comps), bool(fmt.is_rgb), sub, any(c.is_alpha for c in comps)


def choose_pixel_format(source: str, encoder: str, candidates: list[str]) -> str:
    """The encoder's pixel format closest to ``source``: the same one where it can, else the same depth (never
    fewer bits), RGB-ness and chroma subsampling, in that order; a ``VideoError`` when it writes fewer bits."""
    bits, rgb, sub, _ = format_traits(source)
    usable = [c for c in candidates if c != "cuda" and not c.startswith("yuvj") and "msb" not in c]
    if source in usable:
        return source
    scored = []
    for name in usable:
        try:
            b, r, s, alpha = format_traits(name)
        except Exception:  # noqa: BLE001 - a format this FFmpeg cannot describe
            continue
        if b < bits or b > 16:
            continue
        less_sub = s[0] <= sub[0] and s[1] <= sub[1]
        planar = "p" in name  # yuv420p rather than nv12
        scored.append(((b != bits, r != rgb, s != sub, not less_sub, alpha, b, not planar), name))
    if not scored:
        deepest = max((format_traits(c)[0] for c in usable), default=8)
        able = [e for e in ENCODERS if not e.endswith("_nvenc") and _deepest(e) >= bits]
        raise VideoError(f"{encoder} writes at most {deepest}-bit video and this one is {bits}-bit: choose an "
                         f"encoder that keeps {bits} bits (--codec {', '.join(able)})")
    return min(scored)[1]


def _deepest(encoder: str) -> int:
    """The most bits per sample ``encoder`` writes (0 when it is not in this build)."""
    av = require_av()
    try:
        formats = av.codec.Codec(encoder, "w").video_formats or []
    except Exception:  # noqa: BLE001
        return 0
    depths = [format_traits(f.name)[0] for f in formats if f.name != "cuda"]
    return max((d for d in depths if d <= 16), default=0)  # integer samples (not ffv1's float formats)


@dataclass
class VideoInfo:
    """What a video file holds, read when it is opened (the first frame decoded)."""
    path: Path
    container: str            # FFmpeg's short name of the input format (mov,mp4,... -> mov)
    codec: str                # FFmpeg's codec name: h264, hevc, av1, ...
    width: int
    height: int
    pix_fmt: str
    bits: int
    frames: int | None        # from the container's index, else duration x average rate; None when unknown
    duration: float | None    # seconds
    rate: Fraction | None     # average frame rate
    time_base: Fraction
    colour: Colour
    display_matrix: tuple[int, ...] | None
    rotation: int
    sample_aspect_ratio: Fraction | None
    copied: list[str] = field(default_factory=list)    # "audio aac (eng)", ...
    left_out: list[str] = field(default_factory=list)  # streams not carried, with why
    hdr10: HDR10 | None = None

    def describe(self) -> str:
        rate = f", {float(self.rate):.3g} fps" if self.rate else ""
        length = f", {self.duration:.2f} s" if self.duration else ""
        return f"{codec_name(self.codec)} {self.pix_fmt} {self.width}x{self.height}{length}{rate}"


@dataclass
class Frame:
    """A decoded frame: (H, W, 3) RGB samples, uint8 (8-bit video) or uint16 (deeper), and its timing in the
    stream's time base."""
    pixels: np.ndarray
    pts: int
    duration: int


# -- reading --------------------------------------------------------------------------------------------

class VideoReader:
    """The first video stream of a file, decoded; the audio and subtitle packets to copy. A context manager.

    Opening decodes the first frame (its colour tags, rotation and interlacing are known only from it) and
    refuses, as a ``VideoError`` naming the file: a file that cannot be opened, no video stream, a codec with no
    decoder here, interlaced video. ``items()`` then yields ``Frame``s and the copied streams' packets in file
    order, and refuses a frame size that changes, corrupt data and a file that ends before its stated length.
    """

    def __init__(self, path):
        av = require_av()
        self.path = Path(path)
        self._av = av
        try:
            self.container = av.open(str(self.path), "r")
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: not a video file that can be read ({_reason(exc)})") from None
        except OSError as exc:
            raise VideoError(f"{self.path}: cannot be read ({exc.strerror or exc})") from None
        try:
            self._open()
        except BaseException:
            self.container.close()
            raise

    def _open(self) -> None:
        av, path = self._av, self.path
        videos = [s for s in self.container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not videos:
            raise VideoError(f"{path}: has no video stream")
        self.stream = stream = videos[0]
        if stream.codec_context is None:
            raise VideoError(f"{path}: unsupported video codec (none of this FFmpeg build's decoders reads it)")
        field_order = int(stream.codec_context.field_order or 0)
        if field_order in FIELD_ORDERS:
            raise _interlaced(path, FIELD_ORDERS[field_order])
        stream.thread_type = "AUTO"
        self.copy_streams = []
        left_out, copied = [], []
        for other in self.container.streams:
            if other.index == stream.index:
                continue
            label = _stream_label(other)
            if other.type in ("audio", "subtitle"):
                if other.codec_context is None:
                    raise VideoError(f"{path}: its {other.type} stream {other.index} has a codec this FFmpeg build "
                                     f"does not know, so it cannot be copied")
                self.copy_streams.append(other)
                copied.append(label)
            elif other.type == "attachment":
                self.copy_streams.append(other)
                copied.append(label)
            else:
                left_out.append(f"{label} left out" if other.type != "video" else f"{label} left out (only the "
                                                                                      f"first video is upscaled)")
        self._copied_indexes = {s.index for s in self.copy_streams if s.type != "attachment"}
        demux_streams = [stream] + [s for s in self.copy_streams if s.type != "attachment"]
        self._packets = self.container.demux(demux_streams)
        self._last_end = 0.0          # seconds: the end of the last packet read, any stream
        self._source = self._decoded()
        self._pending: list[Any] = []  # decoded frames and packets read before the first frame
        first = self._first_frame()
        rgb = format_traits(first.format.name)[1]
        self.colour = colour_of(first, stream.codec_context, rgb)
        self.bits = format_traits(first.format.name)[0]
        self._to_rgb = "rgb24" if self.bits <= 8 else "rgb48le"
        self._flags = _sws_flags()
        display = None
        for side in first.side_data:
            if "DISPLAYMATRIX" in str(getattr(side, "type", "")):
                data = bytes(side)
                if len(data) == 36:
                    display = struct.unpack("<9i", data)
        rate = stream.average_rate or stream.guessed_rate
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif self.container.duration:
            duration = self.container.duration / 1e6
        frames = stream.frames or (round(duration * rate) if duration and rate else None)
        self.info = VideoInfo(
            path=path, container=self.container.format.name.split(",")[0], codec=_codec_id(stream) or "unknown",
            width=first.width, height=first.height, pix_fmt=first.format.name, bits=self.bits, frames=frames or None,
            duration=duration, rate=Fraction(rate) if rate else None, time_base=Fraction(stream.time_base),
            colour=self.colour, display_matrix=display, rotation=int(first.rotation or 0),
            sample_aspect_ratio=stream.sample_aspect_ratio or None, copied=copied, left_out=left_out,
            hdr10=hdr10_of(first))
        self._size = (first.width, first.height)

    # -- decoding -------------------------------------------------------------------------------------
    def _first_frame(self):
        for item in self._source:
            self._pending.append(item)
            if not _is_packet(item):
                return item
        raise VideoError(f"{self.path}: its video stream has no frame that can be decoded")

    def _decoded(self) -> Iterator[Any]:
        """Decoded video frames (PyAV's) and the copied streams' packets, in file order."""
        av, stream = self._av, self.stream
        try:
            for packet in self._packets:
                if packet.pts is not None and packet.time_base is not None:
                    end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    self._last_end = max(self._last_end, end)
                index = packet.stream.index  # (the flush packets at the end carry no stream_index)
                if index != stream.index:
                    if packet.size and index in self._copied_indexes and not _empty_mov_text(packet):
                        yield packet
                    continue
                yield from stream.decode(packet if packet.size else None)
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: corrupt or truncated video data after {self._last_end:.2f} s "
                             f"({_reason(exc)})") from None

    def items(self) -> Iterator[Frame | Any]:
        """``Frame``s in display order and the copied streams' packets (PyAV ``Packet``s), in file order."""
        count = 0
        last_pts, last_duration = None, 0
        max_duration = 0
        pending, self._pending = self._pending, []
        for item in _chain(pending, self._source):
            if _is_packet(item):
                yield item
                continue
            frame = item
            if frame.interlaced_frame:
                raise _interlaced(self.path, "interlaced frames")
            if (frame.width, frame.height) != self._size:
                raise VideoError(f"{self.path}: the frame size changes from {self._size[0]}x{self._size[1]} to "
                                 f"{frame.width}x{frame.height} at frame {count} ({_seconds(frame):.2f} s); only "
                                 f"videos of one frame size are upscaled")
            if frame.is_corrupt:
                raise VideoError(f"{self.path}: corrupt video data in frame {count} ({_seconds(frame):.2f} s)")
            pts = frame.pts
            if pts is None:
                pts = 0 if last_pts is None else last_pts + last_duration
            duration = int(frame.duration or 0) or last_duration or self._default_duration()
            last_pts, last_duration = pts, duration
            max_duration = max(max_duration, duration)
            count += 1
            yield Frame(self._rgb(frame), pts, duration)
        self._check_complete(count, max_duration)

    def _rgb(self, frame) -> np.ndarray:
        converted = frame.reformat(format=self._to_rgb, src_colorspace=self.colour.sws_matrix,
                                   src_color_range=RANGE_FULL if self.colour.full_range else RANGE_LIMITED,
                                   interpolation=self._flags)
        return converted.to_ndarray()

    def _default_duration(self) -> int:
        rate = self.info.rate if hasattr(self, "info") else None
        if rate:
            return max(1, round(1 / (rate * self.stream.time_base)))
        return 1

    def _check_complete(self, count: int, max_duration: int) -> None:
        stated = self.stream.frames
        if stated and count < stated:
            raise VideoError(f"{self.path}: truncated: {count} of its {stated} frames could be decoded")
        total = self.container.duration
        if total:
            end = total / 1e6 + (float(self.container.start_time) / 1e6 if self.container.start_time else 0.0)
            slack = max(0.25, 2 * float(max_duration * self.stream.time_base))
            if self._last_end < end - slack:
                raise VideoError(f"{self.path}: truncated: its data stops at {self._last_end:.2f} s of "
                                 f"{end:.2f} s")

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _codec_id(stream) -> str | None:
    """The stream's codec by FFmpeg's codec name (av1, not the decoder's name libdav1d), None when unknown."""
    if stream.codec_context is None:
        return None
    return stream.codec_context.codec.canonical_name


def _empty_mov_text(packet) -> bool:
    """An empty MP4 text sample: what the MP4 muxer writes between two subtitles, and writes again on remuxing
    (copied, each gap would get two)."""
    return packet.size == 2 and packet.stream.codec_context.name == "mov_text" and bytes(packet) == b"\0\0"


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    yield from rest


def _is_packet(item) -> bool:
    return type(item).__name__ == "Packet"


def _seconds(frame) -> float:
    return float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else 0.0


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).splitlines()[0] if text else type(exc).__name__


def _interlaced(path: Path, what: str) -> VideoError:
    return VideoError(f"{path}: interlaced video ({what}); the network upscales whole frames, so deinterlace it "
                      f"first (e.g. ffmpeg -i IN -vf bwdif -c:a copy OUT)")


def _stream_label(stream) -> str:
    name = _codec_id(stream)
    if stream.type == "attachment":
        return f"attachment {stream.metadata.get('filename', stream.index)}"
    language = stream.metadata.get("language")
    lang = f" ({language})" if language and language != "und" else ""
    return f"{stream.type} {name or 'stream'}{lang}"


# -- writing --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncodeOptions:
    """How the upscaled video is written: ``codec`` None picks the input's codec family, ``crf`` None the
    encoder's visually lossless default, ``preset`` None the encoder's default speed; ``container`` one of
    CONTAINERS or "same"."""
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    container: str = "same"


def output_container(source: Path, container: str) -> tuple[str, str]:
    """(--ext name, file suffix) of the output for ``source`` and --ext ``container`` ('same' keeps the input's
    container where it is one written here, else Matroska)."""
    if container != "same":
        return container, f".{container}"
    suffix = source.suffix.lower()
    if suffix in SAME_SUFFIXES:
        return SAME_SUFFIXES[suffix], source.suffix
    return FALLBACK_CONTAINER, f".{FALLBACK_CONTAINER}"


def choose_encoder(info: VideoInfo, options: EncodeOptions, container: str) -> str:
    """The encoder: ``options.codec``, else the input's codec family where there is an encoder for it (and the
    container holds it), else x264 (VP9 in WebM)."""
    av = require_av()
    holds = container_codecs(container)
    if options.codec:
        name = options.codec
    else:
        name = FAMILY_ENCODERS.get(info.codec, "")
        if _codec_of(name) not in holds:
            name = FALLBACK_ENCODER.get(container, "libx264")
    try:
        codec = av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends
        raise VideoError(f"encoder {name} is not in this FFmpeg build (PyAV {av.__version__})") from None
    if codec.canonical_name not in holds:
        raise VideoError(f"{container} cannot hold {codec_name(codec.canonical_name)} video ({name}): choose "
                         f"--ext mkv")
    return name


def container_codecs(container: str) -> set[str]:
    """FFmpeg's names of the codecs the container (a key of CONTAINERS) holds."""
    av = require_av()
    with av.open(io.BytesIO(), "w", format=CONTAINERS[container]) as probe:
        return set(probe.supported_codecs)


# The CPU encoder of each NVENC encoder's codec, named when NVENC cannot be opened.
NVENC_ALTERNATIVES = {"h264_nvenc": "libx264", "hevc_nvenc": "libx265", "av1_nvenc": "libsvtav1"}


def open_encoder(context, encoder: str) -> None:
    """Open the encoder now, before any frame is upscaled (PyAV would open it at the first frame); a failure is a
    ``VideoError`` with FFmpeg's own reason (an NVENC encoder on a machine without NVENC, say)."""
    av = require_av()
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # FFmpeg's reason is logged, not returned
    try:
        with av.logging.Capture() as logs:
            context.open()
    except av.FFmpegError as exc:
        reason = logs[-1][2].strip() if logs else _reason(exc)
        hint = ""
        if encoder in NVENC_ALTERNATIVES:
            hint = (f"; NVENC needs an NVIDIA GPU with NVENC (the A100, H100 and H200 have none) and its driver; "
                    f"a CPU encoder of the same codec: --codec {NVENC_ALTERNATIVES[encoder]}")
        raise VideoError(f"{encoder} cannot be opened here ({reason}){hint}") from None
    finally:
        av.logging.set_level(level)


def encoder_problem(encoder: str, width: int, height: int, pix_fmt: str = "yuv420p") -> str | None:
    """Why ``encoder`` cannot write ``pix_fmt`` video of that size here (not in this FFmpeg build, or it does not
    open: an NVENC encoder without an NVIDIA GPU that has NVENC), None where it can."""
    av = require_av()
    try:
        av.codec.Codec(encoder, "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends
        return f"encoder {encoder} is not in this FFmpeg build (PyAV {av.__version__})"
    with av.open(io.BytesIO(), "w", format="matroska") as probe:
        stream = probe.add_stream(encoder, rate=24, options=encoder_options(encoder, None, None))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        try:
            open_encoder(stream.codec_context, encoder)
        except VideoError as exc:
            return str(exc)
    return None


def _codec_of(encoder: str) -> str | None:
    """The codec an encoder writes (libx264 -> h264), None for no encoder."""
    av = require_av()
    try:
        return av.codec.Codec(encoder, "w").canonical_name
    except Exception:  # noqa: BLE001
        return None


def encoder_options(encoder: str, crf: int | None, preset: str | None) -> dict[str, str]:
    """FFmpeg options of ``encoder`` for a constant quality ``crf`` and a speed ``preset``."""
    if encoder == "ffv1":
        if crf is not None or preset is not None:
            raise VideoError(f"ffv1 is lossless: --{'crf' if crf is not None else 'preset'} does not apply to it")
        return {"level": "3", "slicecrc": "1"}  # version 3: multithreaded slices, each with a CRC
    if crf is None:
        crf = DEFAULT_CRF.get(encoder, 17)
    if not 0 <= crf <= CRF_RANGE.get(encoder, 51):
        raise VideoError(f"--crf {crf} is out of {encoder}'s range 0-{CRF_RANGE.get(encoder, 51)}")
    if encoder == "libx264":
        return {"crf": str(crf), "preset": preset or "medium"}
    if encoder == "libx265":
        return {"crf": str(crf), "preset": preset or "medium", "x265-params": "log-level=error"}
    if encoder == "libvpx-vp9":  # constant quality: crf with no bitrate target; cpu-used is the speed
        return {"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": preset or "4", "row-mt": "1"}
    if encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1's own log (read by the library): errors only
        return {"crf": str(crf), "preset": preset or "8"}
    if encoder.endswith("_nvenc"):
        return {"rc": "vbr", "cq": str(crf), "b": "0", "preset": preset or "p5", "tune": "hq"}
    return {"crf": str(crf), **({"preset": preset} if preset else {})}


class VideoWriter:
    """The upscaled video written to ``path`` (a temporary path: see ``io.atomic``) in container ``container``
    (a key of CONTAINERS): ``write`` encodes RGB frames of ``scale`` times the input's size at the input's
    timestamps, ``copy`` remuxes a copied stream's packet, ``close`` flushes the encoder and finishes the file."""

    def __init__(self, path, reader: VideoReader, scale: int, options: EncodeOptions, container: str,
                 encoder: str):
        try:
            self._open(path, reader, scale, options, container, encoder)
        except VideoError as exc:
            text = str(exc)
            raise VideoError(text if text.startswith(str(reader.path)) else f"{reader.path}: {text}") from None

    def _open(self, path, reader: VideoReader, scale: int, options: EncodeOptions, container: str,
              encoder: str) -> None:
        av = require_av()
        self._av = av
        info = self.info = reader.info
        self.encoder = encoder
        width, height = info.width * scale, info.height * scale
        codec = av.codec.Codec(encoder, "w")
        self.pix_fmt = choose_pixel_format(info.pix_fmt, encoder, [f.name for f in codec.video_formats or []])
        bits, rgb, sub, _ = format_traits(self.pix_fmt)
        if width % (1 << sub[0]) or height % (1 << sub[1]):
            raise VideoError(f"{encoder} cannot write {self.pix_fmt} at {width}x{height} (odd size for its "
                             f"chroma subsampling); choose another --scale or --codec ffv1")
        opts = encoder_options(encoder, options.crf, options.preset)
        self.notes: list[str] = []
        self.warnings: list[str] = []  # what the input has and the output will not: one warning line each
        if info.hdr10 is not None:
            self._carry_hdr10(info.hdr10, opts)
        self.container = av.open(str(path), "w", format=CONTAINERS[container])
        try:
            self._add_streams(reader, width, height, opts, rgb, container)
        except BaseException:
            self.container.close()
            raise
        if self.pix_fmt != info.pix_fmt:
            self.notes.append(f"written {self.pix_fmt}")
        if format_traits(info.pix_fmt)[3]:
            self.notes.append("alpha left out (the network upscales colour)")
        if Path(info.path).suffix.lower() not in SAME_SUFFIXES:
            self.notes.append(f"written as {container} ({info.container} is read, not written, here)")
        self.describe = (f"{encoder} {self.pix_fmt} {width}x{height}"
                         + (f" crf {opts['crf']}" if "crf" in opts else f" cq {opts['cq']}" if "cq" in opts
                            else " lossless" if encoder == "ffv1" else ""))

    def _carry_hdr10(self, hdr: HDR10, opts: dict[str, str]) -> None:
        """Add to ``opts`` the encoder parameters that write ``hdr``: a note where it is kept, a warning where
        not."""
        if hdr.dynamic:
            self.warnings.append(f"{' and '.join(hdr.dynamic)} dynamic metadata left out (only the static HDR10 "
                                 f"metadata is carried)")
        if hdr.partial:
            self.warnings.append("HDR10 mastering display metadata without its primaries or its luminance left out "
                                 "(encoders take it whole)")
        if not (hdr.mastering or hdr.light_level):
            return
        extra = hdr10_options(self.encoder, hdr)
        if extra is None:
            self.warnings.append(f"HDR10 metadata ({hdr.describe()}) left out: PyAV cannot give it to "
                                 f"{self.encoder} (--codec libx265, libx264 or libsvtav1 keep it)")
            return
        for key, value in extra.items():
            opts[key] = ":".join(filter(None, (opts.get(key), value)))
        self.notes.append(f"HDR10 {hdr.describe()} kept")

    def _add_streams(self, reader: VideoReader, width: int, height: int, opts: dict[str, str], rgb: bool,
                     container: str) -> None:
        info = self.info
        out = self.container
        supported = out.supported_codecs
        for stream in reader.copy_streams:
            name = _codec_id(stream)
            if stream.type == "attachment":
                if container != "mkv":
                    self.notes.append(f"{_stream_label(stream)} left out ({container} holds no attachments)")
                continue
            if name not in supported:
                raise VideoError(f"{reader.path}: its {_stream_label(stream)} cannot be copied into "
                                 f"{container}: choose --ext mkv (which holds it) or --ext same")
        rate = info.rate or Fraction(25)
        video = self.video = out.add_stream(self.encoder, rate=rate, options=opts)
        video.width, video.height, video.pix_fmt = width, height, self.pix_fmt
        video.time_base = info.time_base
        context = video.codec_context
        context.time_base = info.time_base
        colour = info.colour
        if not rgb or format_traits(info.pix_fmt)[1]:
            context.color_primaries, context.color_trc = colour.primaries, colour.transfer
            context.colorspace = 0 if rgb else colour.matrix
            context.color_range = RANGE_FULL if colour.full_range and not rgb else colour.range
        else:  # RGB video written as YUV (an encoder without RGB): BT.709, full range, tagged so
            context.color_primaries, context.color_trc = colour.primaries, colour.transfer
            context.colorspace, context.color_range = BT709, RANGE_FULL
        self._dst_matrix = SWS_MATRIX.get(int(context.colorspace), SWS_MATRIX[BT709])
        self._dst_range = int(context.color_range) or RANGE_LIMITED
        if info.sample_aspect_ratio:
            context.sample_aspect_ratio = info.sample_aspect_ratio
        if info.display_matrix is not None:
            video.set_display_matrix(list(info.display_matrix))
        if self.encoder in ("libx265", "hevc_nvenc") and container in ("mp4", "mov"):
            context.codec_tag = "hvc1"  # what Apple's players ask for; FFmpeg's default hev1 is refused there
        with contextlib.suppress(Exception):
            video.metadata.update({k: v for k, v in reader.stream.metadata.items()
                                   if k.lower() in ("language", "title", "handler_name")})
        open_encoder(context, self.encoder)
        self._copies: dict[int, Any] = {}
        for stream in reader.copy_streams:
            if stream.type == "attachment":
                if container == "mkv":
                    meta = stream.metadata
                    out.add_attachment(meta.get("filename", f"attachment{stream.index}"),
                                       meta.get("mimetype", "application/octet-stream"), _attachment_data(stream))
                continue
            copy = out.add_stream_from_template(stream)
            copy.metadata.update(stream.metadata)
            with contextlib.suppress(Exception):
                copy.disposition = stream.disposition
            self._copies[stream.index] = copy
        with contextlib.suppress(Exception):
            out.metadata.update(reader.container.metadata)
        with contextlib.suppress(Exception):
            chapters = reader.container.chapters()
            if chapters:
                out.set_chapters(chapters)
        self._flags = _sws_flags()
        self._from_rgb = "rgb24" if info.bits <= 8 else "rgb48le"

    def write(self, frame: Frame) -> None:
        """Encode one upscaled frame (RGB, the input's sample type) at the input's timestamp."""
        av = self._av
        image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.pixels), format=self._from_rgb)
        image = image.reformat(format=self.pix_fmt, dst_colorspace=self._dst_matrix,
                               dst_color_range=self._dst_range, interpolation=self._flags)
        image.pts = frame.pts
        image.duration = frame.duration
        image.time_base = self.info.time_base
        self.container.mux(self.video.encode(image))

    def copy(self, packet) -> None:
        """Remux a copied stream's packet as it was."""
        target = self._copies.get(packet.stream_index)
        if target is None:
            return
        packet.stream = target
        self.container.mux(packet)

    def finish(self) -> None:
        """Flush the encoder and write the file's index: the file is complete."""
        self.container.mux(self.video.encode(None))
        self.container.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()


def _attachment_data(stream) -> bytes:
    data = getattr(stream, "data", None)
    return bytes(data) if data is not None else b""


def describe_streams(info: VideoInfo) -> list[str]:
    """The log line's notes on the other streams: what was copied, what was left out."""
    notes = [f"{label} copied" for label in info.copied]
    return notes + info.left_out


def probe(path) -> VideoInfo:
    """The ``VideoInfo`` of a file (opening it decodes its first frame)."""
    with VideoReader(path) as reader:
        return reader.info


def clip_frames(path) -> Iterator[tuple[np.ndarray, int]]:
    """(RGB pixels, pts) of every frame of the first video stream, decoded as the upscaler reads them."""
    with VideoReader(path) as reader:
        for item in reader.items():
            if isinstance(item, Frame):
                yield item.pixels, item.pts

