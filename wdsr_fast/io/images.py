"""Image files in and out: every common mode, 8 and 16 bits, EXIF orientation, ICC profiles and EXIF,
a pixel budget checked before decoding, and atomic writes.

A file becomes a ``Picture``: its pixels as an (H, W, C) uint8 or uint16 array (C = 1 gray, 2 gray + alpha,
3 RGB, 4 RGBA), upright (the EXIF orientation applied), with its ICC profile, its EXIF and a note for every
conversion made on the way (palette -> RGB, CMYK -> RGB with its profile, ...).

Libraries: Pillow reads every header and all metadata, decodes and writes every 8-bit file, applies the EXIF
orientation (``ImageOps.exif_transpose``) and converts CMYK with its ICC profile (``ImageCms``). Pillow has no
16-bit RGB mode (it opens a 48-bit PNG as 8-bit RGB), so 16-bit PNG and TIFF pixels are decoded by OpenCV
(libpng, libtiff: every TIFF compression), 16-bit PNG is encoded by OpenCV with its ICC profile and EXIF, and
16-bit TIFF by tifffile with its ICC profile (OpenCV's TIFF encoder carries no metadata).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .atomic import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

ORIENTATION = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
PIXEL_X_DIMENSION, PIXEL_Y_DIMENSION = 0xA002, 0xA003
# First-IFD EXIF tags that describe the picture rather than the file's layout (a TIFF's first IFD also holds
# its strip offsets, sample formats, ...): only these, and the EXIF and GPS sub-IFDs, are carried to outputs.
PORTABLE_EXIF_TAGS = (0x010E, 0x010F, 0x0110, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132, 0x013B, 0x8298)

# Pillow modes taken as they are, and those converted first (with the note said in the log line).
DIRECT_MODES = {"RGB", "RGBA", "L", "LA", "I;16", "I;16L", "I;16B", "I;16N"}
CONVERTED_MODES = {"1": "L", "PA": "RGBA", "RGBX": "RGB", "RGBa": "RGBA", "La": "LA", "YCbCr": "RGB"}


# What Pillow's decoders raise on corrupt data (a TIFF page without dimensions is a TypeError, for one).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, TypeError, EOFError, struct.error)


class ImageError(ValueError):
    """An image file that cannot be read or written as asked, with the reason."""


@dataclass(frozen=True)
class FileFormat:
    """What a written file format can hold."""
    name: str           # Pillow's format name
    suffix: str
    alpha: bool
    gray: bool
    deep: bool          # 16 bits per sample
    icc: bool
    exif: bool
    lossy: bool = False


FORMATS = {f.name: f for f in (
    FileFormat("PNG", ".png", alpha=True, gray=True, deep=True, icc=True, exif=True),
    FileFormat("JPEG", ".jpg", alpha=False, gray=True, deep=False, icc=True, exif=True, lossy=True),
    FileFormat("WEBP", ".webp", alpha=True, gray=False, deep=False, icc=True, exif=True, lossy=True),
    FileFormat("TIFF", ".tif", alpha=True, gray=True, deep=True, icc=True, exif=True),
    FileFormat("BMP", ".bmp", alpha=False, gray=True, deep=False, icc=False, exif=False),
)}


@dataclass
class Picture:
    """An upright image and what travels with it."""
    pixels: np.ndarray                  # (H, W, C) uint8 or uint16; C: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    icc_profile: bytes | None = None
    exif: Image.Exif | None = None      # without an orientation tag: the pixels are upright
    notes: list[str] = field(default_factory=list)
    source_format: str | None = None    # Pillow's name of the format it was read from

    def __post_init__(self):
        if self.pixels.ndim == 2:
            self.pixels = self.pixels[..., None]
        if self.pixels.ndim != 3 or self.pixels.shape[-1] not in (1, 2, 3, 4):
            raise ImageError(f"expected (H, W) or (H, W, C) pixels with C in 1..4, got {self.pixels.shape}")
        if self.pixels.dtype not in (np.uint8, np.uint16):
            raise ImageError(f"expected uint8 or uint16 pixels, got {self.pixels.dtype}")

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[-1] in (2, 4)

    @property
    def is_gray(self) -> bool:
        return self.pixels.shape[-1] in (1, 2)

    @property
    def bits(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    def describe(self) -> str:
        """E.g. ``RGBA 16-bit 640x480``."""
        mode = ("L", "LA", "RGB", "RGBA")[self.pixels.shape[-1] - 1]
        return f"{mode} {self.bits}-bit {self.pixels.shape[1]}x{self.pixels.shape[0]}"


# -- reading ------------------------------------------------------------------------------------------

def read_image(path) -> Picture:
    """An image file as an upright ``Picture``; ``ImageError`` naming the file and the reason otherwise.

    The pixel budget is Pillow's ``Image.MAX_IMAGE_PIXELS`` (None: no budget), checked from the header before
    any pixel is decoded. Truncated or corrupt pixel data is an error, never filled in.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the budget is checked below
            img = Image.open(path)
    except Image.DecompressionBombError as exc:  # over twice the budget: Pillow refuses without the size
        if (size := _stated_size(path)) is not None:
            check_pixel_budget(path, size)
        raise ImageError(f"{path}: {exc} (PIL.Image.MAX_IMAGE_PIXELS; the upscale command's --max-pixels)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file that can be read (PNG, JPEG, WebP, TIFF, BMP)") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with img:
        check_pixel_budget(path, img.size)
        try:
            frames = getattr(img, "n_frames", 1)  # reads every page's header
        except DECODE_ERRORS as exc:
            raise ImageError(f"{path}: truncated or corrupt image data ({exc})") from None
        if frames > 1:
            raise ImageError(f"{path}: has {frames} frames (an animation or a multi-page file); only single "
                             f"images are upscaled")
        if img.format == "PNG":
            check_png_data(path)
        if _is_16bit(img) and img.mode not in ("I;16", "I;16L", "I;16B", "I;16N"):
            return _read_16bit_color(path, img)
        try:
            img.load()
        except DECODE_ERRORS as exc:
            raise ImageError(f"{path}: truncated or corrupt image data ({exc})") from None
        try:
            return picture_from_pil(img)
        except ImageError as exc:
            raise ImageError(f"{path}: {exc}") from None


def check_pixel_budget(path, size: tuple[int, int]) -> None:
    budget = Image.MAX_IMAGE_PIXELS
    width, height = size
    if budget is not None and width * height > budget:
        raise ImageError(f"{path}: {width}x{height} is {width * height:,} pixels, over the pixel budget of "
                         f"{budget:,} (PIL.Image.MAX_IMAGE_PIXELS; the upscale command's --max-pixels)")


def _stated_size(path: Path) -> tuple[int, int] | None:
    """The width and height a file's header states, read by Pillow's format plugins as ``Image.open`` does but
    without its decompression-bomb check (the caller checks the budget), or None."""
    Image.init()
    try:
        with open(path, "rb") as fp:
            prefix = fp.read(16)
            for factory, accept in Image.OPEN.values():
                accepted = not accept or accept(prefix)
                if not accepted or isinstance(accepted, str):
                    continue
                fp.seek(0)
                try:
                    return factory(fp, str(path)).size
                except (SyntaxError, IndexError, TypeError, struct.error):
                    continue
    except OSError:
        pass
    return None


def picture_from_pil(img: Image.Image) -> Picture:
    """A loaded PIL image as an upright ``Picture`` in one of the working modes (L, LA, RGB, RGBA, 16-bit gray)."""
    notes: list[str] = []
    source_format = img.format
    icc = img.info.get("icc_profile") or None
    exif, orientation = _exif_of(img, notes)
    if orientation != 1:
        img = ImageOps.exif_transpose(img)
        notes.append(f"EXIF orientation {orientation} applied")
    img, icc = _to_working_mode(img, icc, notes)
    pixels = np.asarray(img)
    if pixels.dtype != np.uint8:
        pixels = pixels.astype(np.uint16)  # I;16B and friends: native byte order
    return Picture(pixels, icc, exif, notes, source_format)


def _exif_of(img: Image.Image, notes: list[str]) -> tuple[Image.Exif | None, int]:
    """(the EXIF worth carrying to an output, the orientation 1..8)."""
    try:
        exif = img.getexif()
        orientation = exif.get(ORIENTATION, 1)
        portable = Image.Exif()
        for tag in PORTABLE_EXIF_TAGS:
            if tag in exif:
                portable[tag] = exif[tag]
        for ifd in (EXIF_IFD, GPS_IFD):
            if ifd in exif and (content := _ifd(exif, ifd)):
                portable[ifd] = content
        portable.tobytes()  # values Pillow cannot write back fail here, not at write time
    except Exception as exc:  # noqa: BLE001 - Pillow's EXIF parser raises assorted errors on corrupt data
        notes.append(f"unreadable EXIF dropped ({type(exc).__name__})")
        return None, 1
    if orientation not in range(1, 9):
        notes.append(f"invalid EXIF orientation {orientation!r} ignored")
        orientation = 1
    return (portable if len(portable) else None), orientation


PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by IHDR colour type
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def check_png_data(path) -> None:
    """ImageError unless the PNG's image data holds every row its header promises.

    Pillow fills the missing rows of a PNG whose compressed data ends early with black, and libpng refuses it
    with a message of its own on stderr, so the rows are counted here: the IDAT chunks are inflated (at most
    1 MiB at a time, and no further than the expected size) and their length compared with the header's."""
    data = Path(path).read_bytes()
    try:
        width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
        bits = depth * PNG_CHANNELS[color]
        passes = ADAM7 if interlace else ((0, 0, 1, 1),)
        expected = 0
        for x0, y0, dx, dy in passes:
            pass_width, pass_height = -(-(width - x0) // dx), -(-(height - y0) // dy)
            if pass_width > 0 and pass_height > 0:
                expected += pass_height * (1 + -(-pass_width * bits // 8))
        inflate, found, offset = zlib.decompressobj(), 0, 8
        while offset + 8 <= len(data) and found <= expected:
            length, kind = struct.unpack(">I4s", data[offset:offset + 8])
            if kind == b"IDAT":
                pending = data[offset + 8:offset + 8 + length]
                while pending and found <= expected:
                    found += len(inflate.decompress(pending, 1 << 20))
                    pending = inflate.unconsumed_tail
            offset += 12 + length
    except (struct.error, KeyError, zlib.error) as exc:
        raise ImageError(f"{path}: truncated or corrupt image data ({exc})") from None
    if found < expected:
        raise ImageError(f"{path}: truncated or corrupt image data ({found:,} of {expected:,} bytes of rows)")


def _ifd(exif: Image.Exif, tag: int) -> dict:
    """A sub-IFD as a dict, whether ``exif`` was read from a file (an offset) or built here (a dict)."""
    value = exif.get(tag)
    return dict(value) if isinstance(value, dict) else dict(exif.get_ifd(tag))


def _to_working_mode(img: Image.Image, icc: bytes | None, notes: list[str]) -> tuple[Image.Image, bytes | None]:
    mode = img.mode
    if mode in ("L", "RGB") and "transparency" in img.info:
        notes.append(f"{mode} with a transparent colour -> {mode}A")
        return img.convert("LA" if mode == "L" else "RGBA"), icc
    if mode in DIRECT_MODES:
        return img, icc
    if mode == "P":
        target = "RGBA" if "transparency" in img.info else "RGB"
        notes.append(f"palette -> {target}")
        return img.convert(target), icc
    if mode == "CMYK":
        if icc is None:
            notes.append("CMYK without an ICC profile -> RGB (plain inversion)")
            return img.convert("RGB"), None
        try:
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            rgb = ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(icc)), srgb, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            raise ImageError(f"CMYK image with an ICC profile that cannot be used ({exc})") from None
        notes.append("CMYK -> sRGB with its ICC profile")
        assert rgb is not None  # profileToProfile returns None only when asked to work in place
        return rgb, srgb.tobytes()
    if mode in CONVERTED_MODES:
        target = CONVERTED_MODES[mode]
        notes.append(f"{mode} -> {target}")
        return img.convert(target), icc
    if mode in ("I", "F"):
        kind = "32-bit integer" if mode == "I" else "32-bit floating-point"
        raise ImageError(f"{kind} samples (mode {mode!r}) are not supported; save it with 8 or 16 bits per sample")
    raise ImageError(f"image mode {mode!r} is not supported")


def _is_16bit(img: Image.Image) -> bool:
    """Whether the file holds 16 bits per sample (Pillow would decode 16-bit RGB(A) and gray+alpha as 8 bits)."""
    if img.mode.startswith("I;16"):
        return True
    return any(";16" in _rawmode(tile) for tile in getattr(img, "tile", ()))  # ImageFile's decoder tiles


def _rawmode(tile) -> str:
    """The raw mode of a decoder tile (codec, extents, offset, args): args is the raw mode or starts with it."""
    args = tile[3]
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return rawmode if isinstance(rawmode, str) else ""


@contextlib.contextmanager
def _opencv_quiet(cv2):
    """OpenCV logs its decoders' complaints to stderr; the caller reports the failure once, by file."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _library(module: str, name: str, package: str, what: str):
    """Module ``module`` (the library ``name``, pip package ``package``), which ``what`` needs; an ``ImageError``
    saying so when it cannot be imported (a declared dependency, but an environment can lack it), so that a batch
    names the file and goes on."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImageError(f"{what} needs {name} (pip install {package}), which cannot be imported here "
                         f"({exc})") from None


def _read_16bit_color(path: Path, img: Image.Image) -> Picture:
    """16-bit RGB, RGBA or gray+alpha PNG/TIFF: metadata from Pillow, pixels from OpenCV."""
    cv2 = _library("cv2", "OpenCV", "opencv-python-headless", f"{path}: reading 16-bit {img.format} pixels")

    # before anything loads the image (loading empties the decoder tiles)
    gray_alpha = any(_rawmode(tile).startswith("LA") for tile in getattr(img, "tile", ()))
    width, height = img.size
    notes: list[str] = []
    icc = img.info.get("icc_profile") or None
    exif, orientation = _exif_of(img, notes)
    with _opencv_quiet(cv2):
        pixels = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16 or pixels.shape[:2] != (height, width):
        raise ImageError(f"{path}: truncated or corrupt 16-bit image data")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    elif pixels.shape[-1] == 3:
        pixels = pixels[..., ::-1]                      # BGR -> RGB
    else:
        pixels = pixels[..., [0, 3]] if gray_alpha else pixels[..., [2, 1, 0, 3]]  # BGRA -> LA or RGBA
    if orientation != 1:
        pixels = orient(pixels, orientation)
        notes.append(f"EXIF orientation {orientation} applied")
    return Picture(np.ascontiguousarray(pixels), icc, exif, notes, img.format)


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) pixels stored with EXIF ``orientation`` (1..8) -> upright (as ImageOps.exif_transpose)."""
    turn = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
            5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
            7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: np.rot90(a, 1)}
    return turn[orientation](pixels)


def read_rgb(path) -> np.ndarray:
    """Any image file as upright (H, W, 3) uint8 RGB: gray replicated, alpha dropped, 16 bits rounded to 8."""
    pixels = read_image(path).pixels
    if pixels.dtype == np.uint16:
        pixels = to_8bit(pixels)
    channels = pixels.shape[-1]
    color = pixels[..., :1].repeat(3, axis=-1) if channels <= 2 else pixels[..., :3]
    return np.ascontiguousarray(color)


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint16 -> uint8, rounded to nearest (v / 257)."""
    return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


# -- writing ------------------------------------------------------------------------------------------

def write_image(picture: Picture, path, fmt: str = "PNG", quality: int = 95, replace: bool = True) -> list[str]:
    """Write ``picture`` to ``path`` atomically in ``fmt`` (a key of FORMATS); returns what the format changed.
    ``replace=False``: a file that appears at ``path`` meanwhile is kept (``FileExistsError``).

    Transparency a format cannot hold (JPEG, BMP) is an ``ImageError`` unless the alpha is fully opaque
    (``fit_alpha``); 16 bits become 8 in 8-bit formats, gray becomes RGB in WebP, 16-bit gray + alpha is
    written as RGBA, a profile or EXIF the format cannot hold is dropped: each is a note.
    """
    file_format = FORMATS[fmt]
    fitted = fit_alpha(picture, fmt)
    pixels, notes = fitted.pixels, fitted.notes[len(picture.notes):]
    if pixels.dtype == np.uint16 and not file_format.deep:
        pixels = to_8bit(pixels)
        notes.append(f"16-bit -> 8-bit ({fmt} holds 8 bits)")
    if pixels.shape[-1] <= 2:
        reason = (f"{fmt} has no gray" if not file_format.gray
                  else "16-bit gray + alpha is written as RGBA" if pixels.dtype == np.uint16 and pixels.shape[-1] == 2
                  else None)
        if reason:
            pixels = np.concatenate([pixels[..., :1].repeat(3, axis=-1), pixels[..., 1:]], axis=-1)
            notes.append(f"gray written as {'RGBA' if pixels.shape[-1] == 4 else 'RGB'} ({reason})")
    icc = picture.icc_profile if file_format.icc else None
    if picture.icc_profile and icc is None:
        notes.append(f"ICC profile dropped ({fmt} has none)")
    exif = _exif_for(picture, pixels.shape) if file_format.exif else None
    if exif is not None and fmt == "TIFF" and pixels.dtype == np.uint16:
        exif = None
        notes.append("EXIF not written (16-bit TIFF)")
    elif picture.exif is not None and exif is None:
        notes.append(f"EXIF dropped ({fmt} has none)")
    with atomic_path(path, replace=replace) as tmp:
        if pixels.dtype == np.uint16:
            (_write_png16 if fmt == "PNG" else _write_tiff16)(pixels, tmp, icc, exif)
        else:
            _write_pillow(pixels, tmp, file_format, quality, icc, exif)
    return notes


def fit_alpha(picture: Picture, fmt: str) -> Picture:
    """``picture`` ready for a format without transparency (JPEG, BMP): a fully opaque alpha is dropped (and
    said); any other alpha is an ``ImageError``. Pictures without alpha, or for other formats, come back as are."""
    if not picture.has_alpha or FORMATS[fmt].alpha:
        return picture
    pixels = picture.pixels
    if pixels[..., -1].min() < np.iinfo(pixels.dtype).max:
        raise ImageError(f"has transparency, which {fmt} cannot store: write PNG, WebP or TIFF instead")
    return Picture(pixels[..., :-1], picture.icc_profile, picture.exif,
                   [*picture.notes, f"opaque alpha dropped ({fmt} has none)"], picture.source_format)


def _exif_for(picture: Picture, shape: tuple) -> bytes | None:
    """The picture's EXIF as bytes for a file of ``shape``, its pixel dimensions updated where it states them."""
    if picture.exif is None:
        return None
    exif = Image.Exif()
    for tag, value in picture.exif.items():
        exif[tag] = _ifd(picture.exif, tag) if tag in (EXIF_IFD, GPS_IFD) else value
    sub = exif.get(EXIF_IFD)
    if isinstance(sub, dict):
        for tag, size in ((PIXEL_X_DIMENSION, shape[1]), (PIXEL_Y_DIMENSION, shape[0])):
            if tag in sub:
                sub[tag] = int(size)
    return exif.tobytes()


def _write_pillow(pixels, tmp, file_format: FileFormat, quality: int, icc, exif) -> None:
    image = Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels))
    options = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if file_format.lossy:
        options["quality"] = quality
    if file_format.name == "TIFF" and not exif:
        options["compression"] = "tiff_adobe_deflate"  # libtiff's writer cannot store an EXIF sub-IFD
    image.save(tmp, format=file_format.name, **options)


def _write_png16(pixels, tmp, icc, exif) -> None:
    cv2 = _library("cv2", "OpenCV", "opencv-python-headless", "writing 16-bit PNG")

    channels = pixels.shape[-1]
    bgr = pixels[..., 0] if channels == 1 else pixels[..., [2, 1, 0]] if channels == 3 else pixels[..., [2, 1, 0, 3]]
    kinds, blobs = [], []
    if icc:
        kinds.append(cv2.IMAGE_METADATA_ICCP)
        blobs.append(np.frombuffer(icc, np.uint8))
    if exif:
        kinds.append(cv2.IMAGE_METADATA_EXIF)
        blobs.append(np.frombuffer(exif.removeprefix(b"Exif\x00\x00"), np.uint8))  # PNG's eXIf has no header
    with _opencv_quiet(cv2):
        ok, encoded = cv2.imencodeWithMetadata(".png", np.ascontiguousarray(bgr), kinds, blobs)
    if not ok:
        raise ImageError(f"{tmp}: the PNG encoder failed")
    with open(tmp, "wb") as out:
        out.write(encoded.tobytes())


def _write_tiff16(pixels, tmp, icc, exif) -> None:
    tifffile = _library("tifffile", "tifffile", "tifffile", "writing 16-bit TIFF")

    channels = pixels.shape[-1]
    tifffile.imwrite(tmp, pixels[..., 0] if channels == 1 else pixels,
                     photometric="minisblack" if channels == 1 else "rgb",
                     extrasamples=["unassalpha"] if channels == 4 else None,
                     compression="zlib", iccprofile=icc)


def picture_to_pil(picture: Picture) -> Image.Image:
    """An 8-bit picture, or a 16-bit gray one, as a PIL image carrying its ICC profile and EXIF in ``info``."""
    pixels = picture.pixels
    if pixels.dtype == np.uint16 and pixels.shape[-1] != 1:
        raise ImageError("PIL has no 16-bit color mode: ask for a numpy array to keep 16 bits")
    image = Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels))
    if picture.icc_profile:
        image.info["icc_profile"] = picture.icc_profile
    if (exif := _exif_for(picture, pixels.shape)) is not None:
        image.info["exif"] = exif
    return image


def save_png(array: np.ndarray, path) -> None:
    """Write an (H, W, C) uint8/uint16 array as PNG, atomically."""
    write_image(Picture(array), path, "PNG")


# -- tensors ------------------------------------------------------------------------------------------

def pixels_to_tensor(pixels: np.ndarray, rgb_range: float) -> torch.Tensor:
    """(H, W, C) uint8 or uint16 -> (1, C, H, W) float32 in [0, rgb_range]."""
    full = float(np.iinfo(pixels.dtype).max)
    tensor = torch.from_numpy(np.ascontiguousarray(pixels).astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    return tensor * (rgb_range / full)


def quantize(tensor: torch.Tensor, rgb_range: float, dtype) -> torch.Tensor:
    """Float in [0, rgb_range] -> the integer samples of ``dtype`` (np.uint8 / np.uint16), clamped and rounded.
    16-bit samples come back as int32 (every device has it); the caller stores them into uint16."""
    full = float(np.iinfo(dtype).max)
    scaled = (tensor.float() * (full / rgb_range)).clamp(0, full).round()
    return scaled.to(torch.uint8 if full == 255 else torch.int32)


def uint8_to_tensor(array: np.ndarray, rgb_range: float) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, rgb_range]."""
    return pixels_to_tensor(np.asarray(array, dtype=np.uint8), rgb_range)


def tensor_to_uint8(tensor: torch.Tensor, rgb_range: float) -> np.ndarray:
    """(1, 3, H, W) in [0, rgb_range] -> (H, W, 3) uint8, clamped and rounded."""
    return quantize(tensor[0], rgb_range, np.uint8).permute(1, 2, 0).cpu().numpy()
