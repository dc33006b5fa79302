"""Test set-up: Triton kernels run in the interpreter on CPU tensors when no GPU is visible; the shared fixtures
(the video tests' model and clips among them: here rather than in tests/video/, so that ``from conftest import``
in tests/images always finds the images' conftest).

TRITON_INTERPRET must be set before any @triton.jit runs, hence here, before wdsr_fast is imported. The shared test
functions are in helpers.py.
"""
import os
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from helpers import randomise  # noqa: E402  (after TRITON_INTERPRET is set: it imports wdsr_fast)

from wdsr_fast import WDSR, Upscaler, save_model  # noqa: E402
from wdsr_fast.ops import POISON_ENV  # noqa: E402

torch.manual_seed(0)
VIDEO_TESTS = str(Path(__file__).parent / "video")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture()
def poison(monkeypatch):
    """NaN-poisoned outputs (a missed write shows as NaN), and exact fp32 (no TF32) for the references on GPU."""
    monkeypatch.setenv(POISON_ENV, "1")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# -- the video tests' fixtures (tests/video) --------------------------------------------------------------------

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
    if VIDEO_TESTS not in sys.path:  # on the path when the video tests run; the Ray tests use these clips too
        sys.path.append(VIDEO_TESTS)
    from clips import make_clip  # tests/video/clips.py

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
