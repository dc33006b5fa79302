"""Reading and writing every image a user has: modes, 16 bits, EXIF orientation, ICC profiles, EXIF, bombs and
truncated files, and what each output format can and cannot hold."""
import io

import cv2
import numpy as np
import pytest
import tifffile
from conftest import (
    astronaut,
    camera,
    cmyk_profile,
    deep,
    exif_bytes,
    grace_hopper_path,
    png_file,
    png_gray_alpha16,
    sprite_rgba,
    srgb_profile,
    stored_for,
)
from PIL import Image, ImageCms, ImageOps

from wdsr_fast.io.images import (
    FORMATS,
    ImageError,
    Picture,
    orient,
    picture_to_pil,
    read_image,
    read_rgb,
    save_png,
    to_8bit,
    write_image,
)


def write_cv2(path, pixels):
    """(H, W, C) RGB(A) or gray uint16 written by OpenCV (which wants BGR order)."""
    channels = pixels.shape[-1] if pixels.ndim == 3 else 1
    bgr = pixels if channels == 1 else pixels[..., [2, 1, 0, 3][:channels]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(bgr))


def read_cv2(path):
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels.ndim == 3:
        pixels = pixels[..., [2, 1, 0, 3][:pixels.shape[-1]]]
    return pixels


# -- modes ----------------------------------------------------------------------------------------------

def test_rgb_photo_as_is(tmp_path):
    Image.fromarray(astronaut()).save(tmp_path / "a.png")
    picture = read_image(tmp_path / "a.png")
    assert picture.pixels.dtype == np.uint8 and np.array_equal(picture.pixels, astronaut())
    assert picture.notes == [] and picture.describe() == "RGB 8-bit 37x31" and picture.source_format == "PNG"


def test_rgba_keeps_its_real_alpha(tmp_path):
    Image.fromarray(sprite_rgba(), "RGBA").save(tmp_path / "s.png")
    picture = read_image(tmp_path / "s.png")
    assert picture.has_alpha and np.array_equal(picture.pixels, sprite_rgba())
    assert len(np.unique(picture.pixels[..., 3])) > 20  # a soft alpha, not just 0/255


def test_gray_and_gray_alpha(tmp_path):
    Image.fromarray(camera()).save(tmp_path / "l.png")
    gray_alpha = np.dstack([camera(), np.linspace(0, 255, camera().size).reshape(camera().shape).astype(np.uint8)])
    Image.fromarray(gray_alpha, "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "l.png").pixels.shape == (29, 23, 1)
    la = read_image(tmp_path / "la.png")
    assert la.is_gray and la.has_alpha and np.array_equal(la.pixels, gray_alpha)


@pytest.mark.parametrize("transparency", [False, True])
def test_palette_becomes_rgb_or_rgba(tmp_path, transparency):
    palette = Image.fromarray(astronaut()).quantize(64)
    options = {"transparency": 0} if transparency else {}
    palette.save(tmp_path / "p.png", **options)
    picture = read_image(tmp_path / "p.png")
    expected = "RGBA" if transparency else "RGB"
    assert picture.notes == [f"palette -> {expected}"]
    assert picture.pixels.shape[-1] == len(expected)
    assert np.array_equal(picture.pixels[..., :3], np.asarray(palette.convert("RGB")))


@pytest.mark.parametrize("mode,key", [("RGB", (0, 0, 0)), ("L", 0)])
def test_transparent_colour_becomes_alpha(tmp_path, mode, key):
    pixels = astronaut() if mode == "RGB" else camera()
    pixels = pixels.copy()
    pixels[:4] = 0
    Image.fromarray(pixels).save(tmp_path / "key.png", transparency=key)
    picture = read_image(tmp_path / "key.png")
    assert picture.notes == [f"{mode} with a transparent colour -> {mode}A"]
    assert picture.has_alpha and (picture.pixels[:4, ..., -1] == 0).all()


def test_cmyk_with_profile_is_converted_with_it(tmp_path):
    profile = cmyk_profile()
    Image.fromarray(astronaut()).convert("CMYK").save(tmp_path / "c.jpg", quality=95, icc_profile=profile)
    Image.new("CMYK", (3, 2), (255, 0, 0, 0)).save(tmp_path / "cyan.tif", icc_profile=profile)
    picture = read_image(tmp_path / "c.jpg")
    assert picture.notes == ["CMYK -> sRGB with its ICC profile"] and picture.describe() == "RGB 8-bit 37x31"
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(picture.icc_profile))).startswith("sRGB")
    with Image.open(tmp_path / "c.jpg") as img:
        plain = np.asarray(img.convert("RGB")).astype(int)
    assert np.abs(picture.pixels.astype(int) - plain).mean() > 10  # the profile changed the colours
    # In this profile full cyan ink absorbs 70% of the red light: plain inversion would give red 0.
    red = read_image(tmp_path / "cyan.tif").pixels[..., 0]
    assert 50 < red.min() <= red.max() < 120


def test_cmyk_without_profile_is_said(tmp_path):
    Image.fromarray(astronaut()).convert("CMYK").save(tmp_path / "c.tif")
    picture = read_image(tmp_path / "c.tif")
    assert picture.notes == ["CMYK without an ICC profile -> RGB (plain inversion)"]
    assert np.abs(picture.pixels.astype(int) - astronaut()).max() <= 1


def test_bilevel_and_float_images(tmp_path):
    Image.fromarray(camera() > 128).save(tmp_path / "bw.png")
    assert read_image(tmp_path / "bw.png").notes == ["1 -> L"]
    tifffile.imwrite(tmp_path / "f.tif", camera().astype(np.float32) / 255)
    with pytest.raises(ImageError, match="32-bit floating-point samples"):
        read_image(tmp_path / "f.tif")


# -- 16 bits --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("kind", ["gray", "rgb", "rgba"])
def test_16bit_files_keep_16_bits(tmp_path, suffix, kind):
    pixels = {"gray": deep(camera())[..., None], "rgb": deep(astronaut()),
              "rgba": deep(sprite_rgba())}[kind]
    path = tmp_path / f"deep{suffix}"
    if suffix == ".png":
        write_cv2(path, pixels[..., 0] if kind == "gray" else pixels)
    else:
        tifffile.imwrite(path, pixels[..., 0] if kind == "gray" else pixels,
                         photometric="minisblack" if kind == "gray" else "rgb",
                         extrasamples=["unassalpha"] if kind == "rgba" else None, compression="zlib")
    picture = read_image(path)
    assert picture.pixels.dtype == np.uint16 and np.array_equal(picture.pixels, pixels)
    assert (picture.pixels % 257 != 0).mean() > 0.6  # the low bytes carry information


def test_16bit_gray_alpha_png(tmp_path):
    pixels = np.dstack([deep(camera()), deep(np.full(camera().shape, 200, np.uint8), seed=1)])
    (tmp_path / "la16.png").write_bytes(png_gray_alpha16(pixels))
    picture = read_image(tmp_path / "la16.png")
    assert picture.pixels.dtype == np.uint16 and np.array_equal(picture.pixels, pixels)


def test_to_8bit_rounds():
    assert list(to_8bit(np.array([0, 128, 129, 257, 65535], np.uint16))) == [0, 0, 1, 1, 255]


# -- orientation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow(orientation):
    pixels = astronaut(5, 7)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    assert np.array_equal(orient(pixels, orientation), np.asarray(ImageOps.exif_transpose(image)))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("bits", [8, 16])
def test_exif_orientation_is_applied(tmp_path, orientation, bits):
    upright = astronaut() if bits == 8 else deep(astronaut())
    stored = stored_for(upright, orientation)
    path = tmp_path / "phone.png"
    if bits == 8:
        Image.fromarray(stored).save(path, exif=exif_bytes(orientation))
    else:
        assert cv2.imwriteWithMetadata(str(path), np.ascontiguousarray(stored[..., ::-1]), [cv2.IMAGE_METADATA_EXIF],
                                       [np.frombuffer(exif_bytes(orientation)[6:], np.uint8)])
    picture = read_image(path)
    assert np.array_equal(picture.pixels, upright)
    assert picture.notes == ([] if orientation == 1 else [f"EXIF orientation {orientation} applied"])
    assert 0x0112 not in picture.exif and picture.exif[0x010F] == "TestCam"


def test_phone_jpeg_comes_out_upright(tmp_path):
    """A portrait phone photo stored sideways (orientation 6) is read upright."""
    with Image.open(grace_hopper_path()) as img:
        upright = np.asarray(img)  # 512 wide, 600 tall
    Image.fromarray(stored_for(upright, 6)).save(tmp_path / "phone.jpg", quality=98, exif=exif_bytes(6))
    picture = read_image(tmp_path / "phone.jpg")
    assert picture.pixels.shape == (600, 512, 3)
    assert np.abs(picture.pixels.astype(int) - upright).mean() < 3


# -- metadata carried -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
@pytest.mark.parametrize("bits", [8, 16])
def test_icc_and_exif_reach_the_output(tmp_path, fmt, bits):
    profile = srgb_profile()
    pixels = astronaut() if bits == 8 else deep(astronaut())
    exif = Image.Exif()
    exif.load(exif_bytes(t9003="2024:05:06 07:08:09", tA002=37, tA003=31))
    picture = Picture(np.kron(pixels, np.ones((2, 2, 1), pixels.dtype)), profile, exif)
    path = tmp_path / f"out{FORMATS[fmt].suffix}"
    notes = write_image(picture, path, fmt)
    with Image.open(path) as img:
        assert img.info.get("icc_profile") == profile
        written = img.getexif()
        if fmt == "TIFF" and bits == 16:
            assert notes == ["EXIF not written (16-bit TIFF)"]
        else:
            assert written[0x010F] == "TestCam" and written.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"
            assert (written.get_ifd(0x8769)[0xA002], written.get_ifd(0x8769)[0xA003]) == (74, 62)  # the new size
    if bits == 16 and FORMATS[fmt].deep:
        assert np.array_equal(read_cv2(path), picture.pixels)
    elif bits == 16:
        assert notes == [f"16-bit -> 8-bit ({fmt} holds 8 bits)"]


def test_gray_16bit_png_and_tiff_round_trip(tmp_path):
    picture = Picture(deep(camera()), srgb_profile())
    for suffix, fmt in ((".png", "PNG"), (".tif", "TIFF")):
        assert write_image(picture, tmp_path / f"g{suffix}", fmt) == []
        again = read_image(tmp_path / f"g{suffix}")
        assert again.pixels.dtype == np.uint16 and np.array_equal(again.pixels, picture.pixels)
        with Image.open(tmp_path / f"g{suffix}") as img:
            assert img.mode.startswith("I;16") and img.info["icc_profile"] == picture.icc_profile


def test_16bit_gray_alpha_is_written_as_rgba(tmp_path):
    pixels = np.dstack([deep(camera()), deep(camera(), seed=2)])
    notes = write_image(Picture(pixels), tmp_path / "la.png", "PNG")
    assert notes == ["gray written as RGBA (16-bit gray + alpha is written as RGBA)"]
    written = read_cv2(tmp_path / "la.png")
    assert written.dtype == np.uint16 and np.array_equal(written[..., [0, 3]], pixels)


# -- what formats cannot hold ---------------------------------------------------------------------------

def test_transparency_is_never_dropped_silently(tmp_path):
    with pytest.raises(ImageError, match="has transparency, which JPEG cannot store"):
        write_image(Picture(sprite_rgba()), tmp_path / "s.jpg", "JPEG")
    assert list(tmp_path.iterdir()) == []
    opaque = np.dstack([astronaut(), np.full(astronaut().shape[:2], 255, np.uint8)])
    assert write_image(Picture(opaque), tmp_path / "o.jpg", "JPEG") == ["opaque alpha dropped (JPEG has none)"]


def test_gray_in_webp_and_profile_in_bmp_are_said(tmp_path):
    assert write_image(Picture(camera()), tmp_path / "g.webp", "WEBP", quality=90) == [
        "gray written as RGB (WEBP has no gray)"]
    exif = Image.Exif()
    exif.load(exif_bytes())
    notes = write_image(Picture(astronaut(), srgb_profile(), exif), tmp_path / "a.bmp", "BMP")
    assert notes == ["ICC profile dropped (BMP has none)", "EXIF dropped (BMP has none)"]


def test_quality_reaches_the_encoder(tmp_path):
    photo = Picture(np.asarray(Image.open(grace_hopper_path())))
    write_image(photo, tmp_path / "low.jpg", "JPEG", quality=20)
    write_image(photo, tmp_path / "high.jpg", "JPEG", quality=95)
    assert (tmp_path / "low.jpg").stat().st_size < 0.5 * (tmp_path / "high.jpg").stat().st_size


def test_picture_to_pil_carries_metadata():
    image = picture_to_pil(Picture(sprite_rgba(), srgb_profile()))
    assert image.mode == "RGBA" and image.info["icc_profile"] == srgb_profile()
    assert picture_to_pil(Picture(deep(camera()))).mode == "I;16"
    with pytest.raises(ImageError, match="no 16-bit color mode"):
        picture_to_pil(Picture(deep(astronaut())))


# -- files that must be refused -------------------------------------------------------------------------

def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_file(100_000, 100_000, 8, 2))
    with pytest.raises(ImageError, match=r"bomb.png: .*100000"):
        read_image(tmp_path / "bomb.png")


def test_pixel_budget(tmp_path, monkeypatch):
    Image.fromarray(astronaut()).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match=r"37x31 is 1,147 pixels, over the pixel budget of 1,000"):
        read_image(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert read_image(tmp_path / "a.png").pixels.shape == (31, 37, 3)


def test_header_claiming_more_rows_than_it_has_is_refused(tmp_path):
    """196 bytes claiming 3000 x 3000: refused, not filled with black."""
    (tmp_path / "short.png").write_bytes(png_file(3000, 3000, 8, 2, b"\0" + bytes(9000)))
    with pytest.raises(ImageError, match="short.png: truncated or corrupt"):
        read_image(tmp_path / "short.png")


@pytest.mark.parametrize("name", ["photo.png", "photo.jpg", "deep.png", "deep.tif"])
def test_truncated_files_are_refused(tmp_path, name, capfd):
    path = tmp_path / name
    big = np.asarray(Image.open(grace_hopper_path()))
    if name.startswith("deep"):
        (write_cv2(path, deep(big)) if name.endswith(".png")
         else tifffile.imwrite(path, deep(big), photometric="rgb", compression="zlib"))
    else:
        Image.fromarray(big).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=f"{name}: truncated or corrupt"):
        read_image(path)
    assert "WARN" not in capfd.readouterr().err  # OpenCV's own complaints are kept quiet


def test_not_an_image_and_missing_file(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageError, match="notes.png: not an image file"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(ImageError, match="missing.png: cannot be read"):
        read_image(tmp_path / "missing.png")


def test_animation_is_refused(tmp_path):
    frames = [Image.fromarray(astronaut()), Image.fromarray(astronaut()[::-1].copy())]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="has 2 frames"):
        read_image(tmp_path / "anim.gif")


# -- helpers the rest of the package uses ----------------------------------------------------------------

def test_read_rgb_for_training(tmp_path):
    Image.fromarray(sprite_rgba(), "RGBA").save(tmp_path / "s.png")
    Image.fromarray(camera()).save(tmp_path / "g.png")
    write_cv2(tmp_path / "d.png", deep(astronaut()))
    assert np.array_equal(read_rgb(tmp_path / "s.png"), sprite_rgba()[..., :3])
    assert np.array_equal(read_rgb(tmp_path / "g.png"), np.dstack([camera()] * 3))
    assert np.array_equal(read_rgb(tmp_path / "d.png"), to_8bit(deep(astronaut())))


def test_save_png_is_atomic_and_exact(tmp_path):
    save_png(astronaut(), tmp_path / "a.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), astronaut())
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
