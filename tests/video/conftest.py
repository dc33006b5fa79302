"""The small model the video tests upscale with, and the clips they share (made once per session with PyAV)."""
from __future__ import annotations

from fractions import Fraction

import pytest
from helpers import randomise

from wdsr_fast import WDSR, Upscaler, save_model

pytest.importorskip("av")


@pytest.fixture(scope="session")
def video_weights(tmp_path_factory):
    """A x2 checkpoint file of a small WDSR-B with random weights."""
    path = tmp_path_factory.mktemp("weights") / "x2.safetensors"
    save_model(randomise(WDSR(variant="b", scale=2, n_feats=8, n_resblocks=2), seed=3), path)
    return path


@pytest.fixture(scope="session")
def upscaler(video_weights):
    """What the upscale command runs on the CPU with ``video_weights``."""
    return Upscaler(video_weights, device="cpu")


@pytest.fixture(scope="session")
def bundled():
    """The bundled x2 weights on the CPU: real pictures, for what an encoder's loss is measured on."""
    return Upscaler(scale=2, device="cpu")


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """The clips of the issue: H.264 + AAC in MP4 with BT.709 tags, 10-bit HEVC in MKV, a variable-frame-rate
    clip, clips with subtitles (MKV SubRip, MP4 timed text) and a rotated phone clip."""
    from clips import make_clip

    folder = tmp_path_factory.mktemp("clips")
    x265 = {"x265-params": "log-level=error"}
    return {
        "h264": make_clip(folder / "h264.mp4", audio=True),
        "hevc10": make_clip(folder / "hevc10.mkv", codec="libx265", pix_fmt="yuv420p10le", bits=10, options=x265,
                            frames=6),
        "vfr": make_clip(folder / "vfr.mkv", pts=[0, 40, 110, 150, 260, 300, 333, 400, 520, 560],
                         time_base=Fraction(1, 1000), audio=True),
        "subs_mkv": make_clip(folder / "subs.mkv", subtitles=True, audio=True),
        "subs_mp4": make_clip(folder / "subs.mp4", subtitles=True),
        "rotated": make_clip(folder / "phone.mp4", rotation=90, width=48, height=32),
    }
