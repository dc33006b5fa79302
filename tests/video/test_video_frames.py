"""A frame takes the image path: the frames written by the video path are the image path's output on the same
decoded frames (exactly with lossless RGB, within the colour conversion's rounding with YUV 4:4:4); the iterator
and one-call Python APIs; the pipeline's bounded queues and how its stages stop each other."""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest
from clips import av, decoded, frame_times, make_clip

import wdsr_fast
from wdsr_fast.inference.video import run_pipeline
from wdsr_fast.io.video import Frame, VideoError, VideoReader, clip_frames, require_av


@pytest.mark.parametrize(("pix_fmt", "bits", "tolerance"), [
    ("bgr0", 8, 0),          # 8-bit RGB: exactly the image path's output
    ("gbrp10le", 10, 64),    # 10-bit RGB: within one 10-bit level (64 in 16-bit samples)
    ("yuv444p", 8, 2),       # YUV 4:4:4: the RGB -> YUV -> RGB rounding (YUV planes: exact, below)
    ("yuv444p10le", 10, 128),
])
def test_ffv1_frames_are_the_image_paths(tmp_path, upscaler, pix_fmt, bits, tolerance):
    src = make_clip(tmp_path / f"{pix_fmt}.mkv", codec="ffv1", pix_fmt=pix_fmt, bits=bits, frames=3, width=40,
                    height=32)
    dst = tmp_path / "out.mkv"
    result = wdsr_fast.upscale_video(src, dst, upscaler, codec="ffv1")
    assert result.frames == 3 and decoded(dst)[0].format.name == pix_fmt
    for (lr, _), (sr, _) in zip(clip_frames(src), clip_frames(dst), strict=True):
        expected = upscaler.upscale_pixels(lr)  # what the image path makes of the decoded frame
        assert sr.dtype == expected.dtype == (np.uint8 if bits == 8 else np.uint16)
        assert np.abs(sr.astype(np.int64) - expected).max() <= tolerance
    if pix_fmt == "yuv444p":  # the written planes are the image path's output converted as the writer converts
        from wdsr_fast.io.video import RANGE_LIMITED, SWS_MATRIX, _sws_flags

        for (lr, _), written in zip(clip_frames(src), decoded(dst), strict=True):
            image = av.VideoFrame.from_ndarray(upscaler.upscale_pixels(lr), format="rgb24")
            yuv = image.reformat(format="yuv444p", dst_colorspace=SWS_MATRIX[1], dst_color_range=RANGE_LIMITED,
                                 interpolation=_sws_flags())
            assert np.array_equal(written.to_ndarray(), yuv.to_ndarray())


def test_upscale_frames_is_upscale_per_frame(upscaler):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(5)]
    frames.insert(2, rng.integers(0, 65536, (8, 10, 3), dtype=np.uint16))  # another size and depth mid-stream
    one_by_one = [upscaler.upscale(f) for f in frames]
    for batch in (1, 3):
        out = list(upscaler.upscale_frames(iter(frames), batch=batch))
        assert [o.shape for o in out] == [o.shape for o in one_by_one]
        for got, want in zip(out, one_by_one, strict=True):
            assert got.dtype == want.dtype and np.abs(got.astype(np.int64) - want).max() <= 1
    with pytest.raises(ValueError, match="batch"):
        upscaler.upscale_frames(frames, batch=0)
    with pytest.raises(TypeError):
        list(upscaler.upscale_frames([np.zeros(5)]))


def test_upscale_frames_is_lazy(upscaler):
    """A generator of frames is consumed as the output is: at most ``batch`` frames are held."""
    taken = []

    def source():
        for k in range(6):
            taken.append(k)
            yield np.full((6, 6, 3), k * 10, np.uint8)

    out = upscaler.upscale_frames(source(), batch=2)
    next(out)
    assert taken == [0, 1]


def test_upscale_video_in_one_call(tmp_path, video_weights, clips):
    result = wdsr_fast.upscale_video(clips["vfr"], tmp_path / "vfr.mp4", weights=video_weights, device="cpu",
                                     crf=23, preset="ultrafast")
    assert result.frames == 10 and result.target == tmp_path / "vfr.mp4"
    assert np.allclose(frame_times(tmp_path / "vfr.mp4"), frame_times(clips["vfr"]), atol=1e-3)
    assert set(result.busy) == {"decode", "upscale", "encode"} and result.bound in result.busy
    assert "crf 23" in result.line()
    with pytest.raises(VideoError, match="suffix"):
        wdsr_fast.upscale_video(clips["vfr"], tmp_path / "vfr.avi", weights=video_weights)
    with pytest.raises(FileExistsError):  # overwrite=False keeps what is there
        wdsr_fast.upscale_video(clips["vfr"], tmp_path / "vfr.mp4", weights=video_weights, device="cpu",
                                overwrite=False)


def test_without_pyav_images_still_work(tmp_path, monkeypatch, video_weights, capsys):
    """PyAV is an optional extra: without it a video is one line saying how to install it; images go on."""
    from PIL import Image

    from wdsr_fast.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(folder / "still.png")
    (folder / "clip.mp4").write_bytes(b"never opened")
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(VideoError, match=r"pip install 'wdsr-fast\[video\]'"):
        require_av()
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out"), "--weights", str(video_weights)]) == 1
    captured = capsys.readouterr()
    assert (tmp_path / "out" / "still_x2.png").exists()
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert lines == [f"error: 1 video file(s) not upscaled ({folder / 'clip.mp4'}): video needs PyAV: "
                     f"pip install 'wdsr-fast[video]'"]


# -- the pipeline, with stand-ins for the reader and writer -------------------------------------------------

class FakeReader:
    def __init__(self, count: int, fail_at: int | None = None):
        self.count, self.fail_at, self.produced = count, fail_at, 0

    def items(self):
        for k in range(self.count):
            if k == self.fail_at:
                raise VideoError("fake: corrupt at frame 7")
            self.produced += 1
            if k % 3 == 0:
                yield f"packet {k}"  # what a copied stream's packet is to the pipeline: not a Frame
            yield Frame(np.full((2, 2, 3), k % 256, np.uint8), pts=k, duration=1)


class FakeWriter:
    def __init__(self, reader: FakeReader, delay: float = 0.0, fail_at: int | None = None):
        self.reader, self.delay, self.fail_at = reader, delay, fail_at
        self.frames, self.packets, self.finished, self.ahead = [], [], False, 0

    def write(self, frame: Frame) -> None:
        if len(self.frames) == self.fail_at:
            raise OSError(28, "No space left on device")
        time.sleep(self.delay)
        self.ahead = max(self.ahead, self.reader.produced - len(self.frames))
        self.frames.append(frame)

    def copy(self, packet) -> None:
        self.packets.append(packet)

    def finish(self) -> None:
        self.finished = True


def double(pixels: np.ndarray) -> np.ndarray:
    return pixels.repeat(2, axis=-2).repeat(2, axis=-3)


@pytest.mark.parametrize("batch", [1, 4])
def test_pipeline_keeps_order_and_memory_bounded(batch):
    """Frames come out in order with their timestamps, packets pass through, and a slow encoder holds the decoder
    back: it is never more than the queues' depth ahead, whatever the length."""
    reader = FakeReader(60)
    writer = FakeWriter(reader, delay=0.002)
    frames, busy = run_pipeline(reader, writer, double, batch=batch)  # type: ignore[arg-type]
    assert frames == 60 and writer.finished
    assert [f.pts for f in writer.frames] == list(range(60))
    assert all(f.pixels.shape == (4, 4, 3) and f.pixels[0, 0, 0] == f.pts for f in writer.frames)
    assert writer.packets == [f"packet {k}" for k in range(0, 60, 3)]
    depth = 2 * batch + 2
    assert writer.ahead <= 2 * depth + batch + 2
    assert set(busy) == {"decode", "upscale", "encode"}


def test_a_failing_stage_stops_the_others():
    threads = threading.active_count()
    reader = FakeReader(10_000, fail_at=7)
    with pytest.raises(VideoError, match="corrupt at frame 7"):
        run_pipeline(reader, FakeWriter(reader), double)  # type: ignore[arg-type]
    reader = FakeReader(10_000)
    writer = FakeWriter(reader, fail_at=5)
    with pytest.raises(OSError, match="No space left"):
        run_pipeline(reader, writer, double)  # type: ignore[arg-type]
    assert reader.produced < 100 and not writer.finished

    def interrupted(pixels):
        raise KeyboardInterrupt

    reader = FakeReader(10_000)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(reader, FakeWriter(reader), interrupted)  # type: ignore[arg-type]
    assert threading.active_count() == threads  # every stage's thread has ended


def test_reader_gives_frames_in_display_order(clips):
    """B-frames are decoded out of order; the frames come in display order with their own timestamps."""
    with VideoReader(clips["h264"]) as reader:
        stamps = [item.pts for item in reader.items() if isinstance(item, Frame)]
    assert stamps == sorted(stamps) and len(stamps) == 12


def test_default_batch_is_the_devices():
    """The upscale command and ``upscale_video`` batch 4 frames on a GPU, 1 on the CPU, unless told."""
    from types import SimpleNamespace

    import torch

    from wdsr_fast.inference.video import default_batch

    assert default_batch(SimpleNamespace(device=torch.device("cuda", 0))) == 4  # type: ignore[arg-type]
    assert default_batch(SimpleNamespace(device=torch.device("cpu"))) == 1  # type: ignore[arg-type]
