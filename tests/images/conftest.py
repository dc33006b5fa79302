"""Real photos in every mode, depth and orientation a user has, and the small models that upscale them.

The photos are scikit-image's and matplotlib's sample photos (offline, in the installed packages), converted
here: RGBA with a real alpha (matplotlib's Minduka sprite), gray, 16-bit with information in the low bytes,
palette, CMYK with an ICC profile made here (no CMYK profile ships with Pillow), EXIF orientations.
"""
from __future__ import annotations

import functools
import struct
import zlib

import numpy as np
import pytest
from helpers import randomise
from PIL import Image, ImageCms

from wdsr_fast import WDSR, FastWDSR, save_model


def small_model(scale: int = 2, seed: int = 3) -> WDSR:
    return randomise(WDSR(variant="b", scale=scale, n_feats=8, n_resblocks=2), seed=seed)


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """A x2 checkpoint file of a small WDSR-B with random weights."""
    path = tmp_path_factory.mktemp("weights") / "x2.safetensors"
    save_model(small_model(), path)
    return path


@pytest.fixture(scope="session")
def reference_model(weights):
    """The model ``weights`` holds, as FastWDSR on the CPU (what the upscaler runs)."""
    from wdsr_fast import load_model

    return FastWDSR.from_reference(load_model(weights), backend="torch").eval()


# -- real photos ----------------------------------------------------------------------------------------

def astronaut(height: int = 31, width: int = 37) -> np.ndarray:
    from skimage import data

    return data.astronaut()[100:100 + height, 180:180 + width].copy()


def camera(height: int = 29, width: int = 23) -> np.ndarray:
    from skimage import data

    return data.camera()[200:200 + height, 240:240 + width].copy()


def sprite_rgba() -> np.ndarray:
    """matplotlib's Minduka sprite: RGBA with a real, soft alpha (251 levels), cropped to 40 x 34 at its edge."""
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False)) as img:
        return np.asarray(img.convert("RGBA"))[70:110, 64:98].copy()


def grace_hopper_path():
    from matplotlib import cbook

    return cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


def deep(pixels8: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 16-bit version of an 8-bit photo whose low bytes carry information (a smooth ramp, not v * 257)."""
    rng = np.random.default_rng(seed)
    smooth = pixels8.astype(np.float64) * 257 + rng.uniform(-128, 128, pixels8.shape)
    return np.clip(np.round(smooth), 0, 65535).astype(np.uint16)


# -- metadata -------------------------------------------------------------------------------------------

@functools.cache
def srgb_profile() -> bytes:
    """An sRGB ICC profile (made once: its header holds the time it was made)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int | None = None, **exif_ifd) -> bytes:
    """EXIF with a camera make/model, an orientation, and EXIF sub-IFD tags given by number."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "TestCam", "Model 7"
    if orientation is not None:
        exif[0x0112] = orientation
    if exif_ifd:
        exif[0x8769] = {int(k.lstrip("t"), 16): v for k, v in exif_ifd.items()}
    return exif.tobytes()


# How to store an upright picture so that EXIF orientation N shows it upright (the inverse of each transform).
STORE_FOR_ORIENTATION = {
    1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored_for(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """The (H, W, C) pixels as a camera would store them with EXIF ``orientation``."""
    method = STORE_FOR_ORIENTATION[orientation]
    if method is None:
        return pixels
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., c])).transpose(method))
              for c in range(pixels.shape[-1])]
    return np.stack(planes, axis=-1)


def cmyk_profile() -> bytes:
    """A CMYK printer profile (ICC v2, CMYK -> Lab lut16) in which full ink absorbs only 70% of its light, so a
    conversion with it differs visibly from Pillow's plain inversion."""
    from skimage.color import rgb2lab

    grid = 5
    axis = np.linspace(0.0, 1.0, grid)
    c, m, y, k = np.meshgrid(axis, axis, axis, axis, indexing="ij")  # first channel varies slowest
    rgb = np.stack([(1 - 0.7 * c) * (1 - 0.7 * k), (1 - 0.7 * m) * (1 - 0.7 * k), (1 - 0.7 * y) * (1 - 0.7 * k)], -1)
    lab = rgb2lab(rgb.reshape(-1, 1, 3)).reshape(-1, 3)
    encoded = np.stack([lab[:, 0] / 100 * 0xFF00, (lab[:, 1] + 128) * 256, (lab[:, 2] + 128) * 256], -1)
    clut = np.clip(np.round(encoded), 0, 65535).astype(">u2").tobytes()
    ramp = np.array([0, 65535], ">u2").tobytes()
    identity = struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536)
    a2b0 = b"mft2" + bytes(4) + struct.pack(">BBBB", 4, 3, grid, 0) + identity + struct.pack(">HH", 2, 2)
    a2b0 += ramp * 4 + clut + ramp * 3

    def s15(v):
        return struct.pack(">i", round(v * 65536))

    text = b"CMYK test profile\0"
    # textDescriptionType: ASCII count and text, then empty Unicode (language, count) and ScriptCode (2+1+67)
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8) + bytes(70)
    tags = [(b"desc", desc), (b"wtpt", b"XYZ " + bytes(4) + s15(0.9642) + s15(1.0) + s15(0.8249)),
            (b"cprt", b"text" + bytes(4) + b"no copyright\0"), (b"A2B0", a2b0)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"prtr" + b"CMYK" + b"Lab "
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + bytes(4) + bytes(4) + bytes(8) + bytes(8)
              + bytes(4) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(4) + bytes(16) + bytes(28))
    assert len(header) == 128
    return header + table + body


# -- hand-made PNG files (what no writer here produces: bombs, truncated data, 16-bit gray + alpha) ----------

def png_file(width: int, height: int, bit_depth: int, color_type: int, rows: bytes = b"") -> bytes:
    """A PNG with the given IHDR and ``rows`` (already filtered: a 0 byte before each row) as its one IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def png_gray_alpha16(pixels: np.ndarray) -> bytes:
    """(H, W, 2) uint16 as a 16-bit gray + alpha PNG."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    return png_file(width, height, 16, 4, rows)
