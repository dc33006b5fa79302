"""Bad video input: one line naming the file and the reason, nothing written under the output's name, and the
batch goes on to the next file; Ctrl-C and kill leave no half-written file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from clips import av, decoded, make_clip
from helpers import sigint_as_in_a_terminal

from wdsr_fast.cli import main
from wdsr_fast.io.video import VideoError, VideoReader


def upscale(*argv) -> int:
    return main(["upscale", *map(str, argv)])


def bad_inputs(folder):
    """{name: (file, what its error line must say)} of every kind of bad input."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = {}
    whole = make_clip(folder / "whole.mp4", frames=24, audio=True).read_bytes()
    (folder / "cut.mp4").write_bytes(whole[: len(whole) * 2 // 3])  # the index (moov) is at the end: lost
    bad["cut.mp4"] = "not a video file that can be read"
    (folder / "whole.mp4").unlink()
    whole = make_clip(folder / "whole.mkv", frames=24, rate=8, audio=True).read_bytes()
    (folder / "cut.mkv").write_bytes(whole[: len(whole) * 2 // 3])  # frames stop before the stated duration
    bad["cut.mkv"] = "truncated"
    (folder / "whole.mkv").unlink()
    (folder / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    bad["noise.mp4"] = "not a video file that can be read"
    out = av.open(str(folder / "sound.mp4"), "w")
    sound = out.add_stream("aac", rate=48000)
    for k in range(5):
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 48000, 1024 * k
        out.mux(sound.encode(chunk))
    out.mux(sound.encode(None))
    out.close()
    bad["sound.mp4"] = "has no video stream"
    data = make_clip(folder / "ffv1.mkv", codec="ffv1", frames=3).read_bytes()
    (folder / "unknown.mkv").write_bytes(data.replace(b"V_FFV1", b"V_QQQ1"))  # a codec id no decoder knows
    (folder / "ffv1.mkv").unlink()
    bad["unknown.mkv"] = "unsupported video codec"
    make_clip(folder / "interlaced.mkv", frames=4, options={"flags": "+ildct+ilme", "x264-params": "tff=1"})
    bad["interlaced.mkv"] = "interlaced video (top field first)"
    first = make_clip(folder / "a.ts", frames=4, container="mpegts").read_bytes()
    second = make_clip(folder / "b.ts", frames=4, width=32, height=24, container="mpegts", start=4).read_bytes()
    (folder / "resized.ts").write_bytes(first + second)  # MPEG-TS files concatenated: a valid stream
    (folder / "a.ts").unlink()
    (folder / "b.ts").unlink()
    bad["resized.ts"] = "the frame size changes from 64x48 to 32x24"
    return bad


def test_each_bad_file_is_one_line_and_the_batch_goes_on(tmp_path, video_weights, capsys):
    bad = bad_inputs(tmp_path / "in")
    make_clip(tmp_path / "in" / "zgood.mp4", frames=3)  # last in the batch: written despite the failures before
    out = tmp_path / "out"
    assert upscale(tmp_path / "in", "-o", out, "--weights", video_weights) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error: " in line]
    assert len(errors) == len(bad), errors
    for name, reason in bad.items():
        line = next(e for e in errors if str(tmp_path / "in" / name) in e)
        assert reason in line, line
    assert sorted(p.name for p in out.iterdir()) == ["zgood_x2.mp4"]  # nothing half-written, no temporary file
    assert f"1 of {len(bad) + 1} videos upscaled x2" in captured.out and f"{len(bad)} failed" in captured.out


def test_a_deeper_video_than_the_encoder_writes_is_refused(tmp_path, video_weights, capsys):
    """12-bit HEVC written with x264 (at most 10 bits): refused with the encoders that keep it, never 8-bit."""
    src = make_clip(tmp_path / "deep.mkv", codec="libx265", pix_fmt="yuv420p12le", bits=12, frames=3,
                    options={"x265-params": "log-level=error"})
    out = tmp_path / "out"
    assert upscale(src, "-o", out, "--weights", video_weights, "--codec", "libx264") == 1
    assert ("libx264 writes at most 10-bit video and this one is 12-bit: choose an encoder that keeps 12 bits "
            "(--codec libx265, ffv1)") in capsys.readouterr().err
    assert list(out.iterdir()) == []
    assert upscale(src, "-o", out, "--weights", video_weights) == 0  # its own family keeps 12 bits
    assert decoded(out / "deep_x2.mkv")[0].format.name == "yuv420p12le"


def test_reader_refuses_before_any_frame_is_yielded(tmp_path):
    bad = bad_inputs(tmp_path)
    with pytest.raises(VideoError, match="interlaced"):
        VideoReader(tmp_path / "interlaced.mkv")
    with pytest.raises(VideoError, match="has no video stream"):
        VideoReader(tmp_path / "sound.mp4")
    assert "resized.ts" in bad


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_an_interrupted_run_leaves_no_file(tmp_path, sig):
    """Stopped in the middle of a video (Ctrl-C, kill): no output under its name, its temporary file removed,
    and a file already there before the run kept as it was."""
    src = make_clip(tmp_path / "long.mkv", frames=40, width=160, height=120)  # seconds with the bundled weights
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept_x2.mkv").write_bytes(b"an earlier result")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "wdsr_fast", "upscale", str(src), "-o", str(out), "--threads",
                             "1"], env=env, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_in_a_terminal)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".long_x2.mkv.") for p in out.iterdir()):  # the temporary file: mid-video
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == (130 if sig == signal.SIGINT else 143)
    assert sorted(p.name for p in out.iterdir()) == ["kept_x2.mkv"]
    assert (out / "kept_x2.mkv").read_bytes() == b"an earlier result"


@pytest.mark.parametrize("encoder", ["h264_nvenc", "hevc_nvenc"])
def test_an_encoder_that_cannot_open_is_one_line_before_any_frame(tmp_path, clips, upscaler, monkeypatch, capsys,
                                                                  encoder):
    """NVENC is in this FFmpeg build, but without an NVIDIA GPU that has it the encoder cannot be opened: one line
    with FFmpeg's reason and the CPU encoder to use, found before the network's first frame, no file left."""
    from wdsr_fast.io.video import encoder_problem

    problem = encoder_problem(encoder, 128, 96)
    if problem is None or "not in this FFmpeg build" in problem:
        pytest.skip(f"{encoder} opens on this machine" if problem is None else problem)
    assert problem.startswith(f"{encoder} cannot be opened here (")
    calls = []
    monkeypatch.setattr(upscaler, "upscale_pixels", lambda pixels, notes=None: calls.append(pixels))
    monkeypatch.setattr("wdsr_fast.cli.upscale.Upscaler", lambda *args, **kwargs: upscaler)
    out = tmp_path / "out"
    assert upscale(clips["h264"], "-o", out, "--codec", encoder) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    alternative = {"h264_nvenc": "libx264", "hevc_nvenc": "libx265"}[encoder]
    assert len(errors) == 1 and errors[0].startswith(f"error: {clips['h264']}: {encoder} cannot be opened here (")
    assert errors[0].endswith(f"NVENC needs an NVIDIA GPU with NVENC (the A100, H100 and H200 have none) and its "
                              f"driver; a CPU encoder of the same codec: --codec {alternative}")
    assert "Traceback" not in err and calls == [] and list(out.iterdir()) == []
