"""Upscaler and tiling: exact tiles kept in host memory, automatic tile size and its halving on out-of-memory,
alpha, gray, 16 bits, PIL and numpy in and out, devices, non-finite outputs."""
import warnings

import numpy as np
import pytest
import torch
from conftest import astronaut, camera, deep, small_model, sprite_rgba, srgb_profile
from helpers import randomise
from PIL import Image

import wdsr_fast
from wdsr_fast import WDSR, FastWDSR, Upscaler
from wdsr_fast.inference.upscaler import (
    MIN_TILE,
    UpscaleError,
    activation_bytes_per_pixel,
    fitting_tile,
    resolve_device,
    tile_windows,
    upscale_tensor,
)
from wdsr_fast.io.images import pixels_to_tensor, quantize, tensor_to_uint8
from wdsr_fast.ops import cpu_backend


def expected_rgb(model, pixels: np.ndarray) -> np.ndarray:
    """The network's output for (H, W, 3) pixels, untiled, rounded to the pixels' dtype."""
    with torch.inference_mode():
        sr = model(pixels_to_tensor(pixels, model.config.rgb_range))
    return quantize(sr[0], model.config.rgb_range, pixels.dtype).permute(1, 2, 0).numpy().astype(pixels.dtype)


# -- tiling ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["a", "b"])
@pytest.mark.parametrize("tile", [5, 8, 13])
def test_tiled_equals_untiled(variant, tile):
    model = FastWDSR(variant=variant, scale=3, n_feats=8, n_resblocks=2, block_feats=16, backend="torch")
    randomise(model).eval()
    image = torch.rand(2, 3, 17, 22) * 255
    with torch.inference_mode():
        whole = model(image)
        tiled = upscale_tensor(model, image, tile=tile)
    assert (tiled - whole).abs().max() < 1e-3
    assert np.array_equal(tensor_to_uint8(tiled[:1], 255), tensor_to_uint8(whole[:1], 255))


def test_tile_pad_too_small_changes_the_result():
    """The receptive-radius pad is what makes tiling exact: a pad of 0 must show seams (the test can fail)."""
    model = randomise(FastWDSR(variant="b", scale=2, n_feats=8, n_resblocks=2, backend="torch")).eval()
    image = torch.rand(1, 3, 16, 16) * 255
    with torch.inference_mode():
        assert (upscale_tensor(model, image, tile=8, tile_pad=0) - model(image)).abs().max() > 1e-2


def test_tiles_cover_the_image_once():
    windows = tile_windows(17, 22, 8, 3)
    covered = np.zeros((17, 22), int)
    for w in windows:
        covered[w.top:w.bottom, w.left:w.right] += 1
        assert (w.y0, w.x0) == (max(w.top - 3, 0), max(w.left - 3, 0))
        assert (w.y1, w.x1) == (min(w.bottom + 3, 17), min(w.right + 3, 22))
    assert (covered == 1).all() and len(windows) == 9


def test_only_tiles_reach_the_model():
    """The model sees padded tiles, never the whole image (what keeps a big image off the device)."""
    seen = []

    class Spy(FastWDSR):
        def forward(self, image):
            seen.append(tuple(image.shape[-2:]))
            return super().forward(image)

    model = randomise(Spy(variant="b", scale=2, n_feats=8, n_resblocks=1, backend="torch")).eval()
    with torch.inference_mode():
        upscale_tensor(model, torch.rand(1, 3, 40, 40) * 255, tile=16)
    pad = model.config.receptive_radius
    assert len(seen) == 9 and max(max(s) for s in seen) <= 16 + 2 * pad


@pytest.mark.parametrize("tile", [None, 4])
def test_empty_image_is_refused(tile):
    """0 px is too small for the network: a clear error, never an empty or missing output."""
    model = WDSR(variant="b", scale=2, n_feats=8, n_resblocks=1).eval()
    with pytest.raises(ValueError, match="empty image"):
        upscale_tensor(model, torch.rand(1, 3, 0, 9), tile=tile)


@pytest.mark.parametrize("kwargs,match", [(dict(tile=0), "tile must be"), (dict(tile=4, tile_pad=-1), "tile_pad")])
def test_bad_tile_arguments(kwargs, match):
    model = WDSR(variant="b", scale=2, n_feats=8, n_resblocks=1).eval()
    with pytest.raises(ValueError, match=match):
        upscale_tensor(model, torch.rand(1, 3, 6, 6), **kwargs)


# -- the Upscaler on every kind of picture --------------------------------------------------------------

@pytest.mark.parametrize("tile", ["auto", None, 7])
def test_rgb_is_the_network_output(weights, reference_model, tile):
    upscaler = Upscaler(weights, device="cpu", tile=tile, backend="torch")
    out = upscaler.upscale(astronaut())
    assert out.dtype == np.uint8 and out.shape == (62, 74, 3)
    assert np.array_equal(out, expected_rgb(reference_model, astronaut()))


def test_16bit_keeps_16bit_precision(weights, reference_model):
    pixels = deep(astronaut())
    out = Upscaler(weights, device="cpu", tile=9, backend="torch").upscale(pixels)
    assert out.dtype == np.uint16 and out.shape == (62, 74, 3)
    expected = expected_rgb(reference_model, pixels)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert (out % 257 != 0).mean() > 0.9  # not an 8-bit result stretched to 16 bits
    as_8bit = expected_rgb(reference_model, (pixels // 257).astype(np.uint8)).astype(int) * 257
    assert np.abs(out.astype(int) - as_8bit).mean() > 20  # the low bytes of the input reached the network


def test_gray_runs_as_rgb_and_comes_back_gray(weights, reference_model):
    out = Upscaler(weights, device="cpu", backend="torch").upscale(camera())
    assert out.shape == (58, 46) and out.dtype == np.uint8
    with torch.inference_mode():
        sr = reference_model(pixels_to_tensor(np.dstack([camera()] * 3), 255.0))
    luma = (sr[0] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    assert np.array_equal(out, luma.clamp(0, 255).round().to(torch.uint8).numpy())


@pytest.mark.parametrize("tile", [None, 9])
def test_alpha_bicubic(weights, reference_model, tile):
    rgba = sprite_rgba()
    out = Upscaler(weights, device="cpu", tile=tile, backend="torch").upscale(rgba)
    assert out.shape == (80, 68, 4)
    assert np.array_equal(out[..., :3], expected_rgb(reference_model, np.ascontiguousarray(rgba[..., :3])))
    alpha = torch.nn.functional.interpolate(torch.from_numpy(rgba[..., 3]).float()[None, None], scale_factor=2,
                                            mode="bicubic", align_corners=False)
    assert np.array_equal(out[..., 3], alpha[0, 0].clamp(0, 255).round().to(torch.uint8).numpy())


def test_alpha_through_the_network(weights):
    rgba = sprite_rgba()
    bicubic = Upscaler(weights, device="cpu", backend="torch").upscale(rgba)
    wdsr = Upscaler(weights, device="cpu", backend="torch", alpha="wdsr").upscale(rgba)
    assert np.array_equal(bicubic[..., :3], wdsr[..., :3])
    assert np.abs(bicubic[..., 3].astype(int) - wdsr[..., 3]).mean() > 1


def test_pil_in_pil_out_with_metadata(weights):
    image = Image.fromarray(sprite_rgba(), "RGBA")
    image.info["icc_profile"] = srgb_profile()
    out = Upscaler(weights, device="cpu", backend="torch").upscale(image)
    assert isinstance(out, Image.Image) and out.mode == "RGBA" and out.size == (68, 80)
    assert out.info["icc_profile"] == srgb_profile()
    gray16 = Image.fromarray(deep(camera()))
    assert Upscaler(weights, device="cpu", backend="torch").upscale(gray16).mode == "I;16"


def test_picture_notes(weights):
    from wdsr_fast.io.images import Picture

    picture = Picture(np.dstack([camera(), camera()]), notes=["palette -> RGBA"])
    result = Upscaler(weights, device="cpu", backend="torch").upscale_picture(picture)
    assert result.notes == ["palette -> RGBA", "gray run as RGB, written back gray", "alpha upscaled by bicubic"]


def test_bad_images_and_arguments(weights):
    upscaler = Upscaler(weights, device="cpu", backend="torch")
    with pytest.raises(ValueError, match="float32"):
        upscaler.upscale(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(TypeError, match="PIL image or a numpy array"):
        upscaler.upscale([[1, 2]])
    with pytest.raises(ValueError, match="alpha must be one of"):
        Upscaler(weights, device="cpu", alpha="nearest")
    with pytest.raises(ValueError, match="tile must be"):
        Upscaler(weights, device="cpu", tile=0)
    with pytest.raises(ValueError, match="x2 model but scale 3"):
        Upscaler(weights, scale=3, device="cpu")


# -- memory: automatic tiles, halving on out-of-memory ---------------------------------------------------

class RunsOutOfMemory(FastWDSR):
    """Raises torch.OutOfMemoryError for inputs above ``limit`` pixels, like a device that is too small."""
    limit = 24 * 24
    sizes: list

    def forward(self, image):
        self.sizes.append(image.shape[-2] * image.shape[-1])
        if image.shape[-2] * image.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB")
        return super().forward(image)


def oom_model(limit: int) -> RunsOutOfMemory:
    model = randomise(RunsOutOfMemory(variant="b", scale=2, n_feats=8, n_resblocks=2, backend="torch"), seed=3)
    model.limit, model.sizes = limit, []
    return model.eval()


def test_auto_tile_halves_on_out_of_memory_and_stays_exact(reference_model):
    model = oom_model(24 * 24)
    model.load_state_dict(reference_model.state_dict())
    upscaler = Upscaler(model, device="cpu", tile="auto")
    notes = []
    pixels = astronaut(60, 70)
    out = upscaler.upscale_pixels(pixels, notes)
    assert np.array_equal(out, expected_rgb(reference_model, pixels))
    assert notes and notes[-1].startswith("out of device memory: tile")
    assert upscaler._fitted_tiles == {1: MIN_TILE}  # 16 + 2 * 4 = 24: the first size that fits
    assert max(model.sizes) > 24 * 24  # it did run out first
    model.sizes.clear()
    upscaler.upscale_pixels(pixels)  # the next image starts at the size that worked
    assert max(model.sizes) <= 24 * 24


def test_out_of_memory_with_the_smallest_tile_is_one_error():
    upscaler = Upscaler(oom_model(1), device="cpu", tile="auto")
    with pytest.raises(UpscaleError, match=f"out of memory on cpu with {MIN_TILE}x{MIN_TILE}-pixel tiles"):
        upscaler.upscale(astronaut())


def test_explicit_tile_is_not_changed():
    upscaler = Upscaler(oom_model(24 * 24), device="cpu", tile=30)
    with pytest.raises(UpscaleError, match="with 30x30-pixel tiles"):
        upscaler.upscale(astronaut())


def test_fitting_tile(monkeypatch):
    config = small_model().config
    sizes = {}
    for free in (1 << 24, 1 << 30, 1 << 40):
        monkeypatch.setattr("wdsr_fast.inference.upscaler.free_memory", lambda device, free=free: free)
        sizes[free] = fitting_tile(config, torch.device("cuda"), 4, 4)
    assert MIN_TILE <= sizes[1 << 24] < sizes[1 << 30] < sizes[1 << 40]
    assert all(side % 8 == 0 for side in sizes.values())
    widest = max(config.wide_feats, config.out_feats)
    assert (sizes[1 << 40] + 8) ** 2 * widest < 2**31  # the fused kernels' 32-bit indexing
    assert fitting_tile(config, torch.device("cpu"), 4, 4) <= 512


def test_frames_run_together_get_tiles_that_fit_together(monkeypatch, reference_model):
    """N frames run together share the device's memory and the fused kernels' 32-bit indexing: WDSR-B 32x16 takes a
    1080p frame (-> 4K) whole alone, but 8 whole ones would pass 2**31 elements; the Upscaler sizes its tiles by
    the frames it runs together, with the output of frame by frame."""
    monkeypatch.setattr("wdsr_fast.inference.upscaler.free_memory", lambda device: 1 << 40)
    config = wdsr_fast.preset("wdsr-b-32x16", 2).config
    widest, pad = max(config.wide_feats, config.out_feats), config.receptive_radius
    alone, eight = (fitting_tile(config, torch.device("cuda"), 2, pad, frames) for frames in (1, 8))
    assert alone >= 1920 and 8 * 1920 * 1080 * widest >= 2**31
    assert 8 * (eight + 2 * pad) ** 2 * widest < 2**31
    model = oom_model(10**9)  # records each tile's size
    model.load_state_dict(reference_model.state_dict())
    upscaler = Upscaler(model, device="cpu", tile="auto")
    pad = upscaler.tile_pad
    bytes_per_pixel = activation_bytes_per_pixel(model.config, 4)
    monkeypatch.setattr("wdsr_fast.inference.upscaler.free_memory",  # a 64-pixel tile for one frame on the CPU
                        lambda device: 4 * (64 + 2 * pad) ** 2 * bytes_per_pixel)
    frames = np.stack([np.roll(astronaut(60, 70), 9 * k, axis=1) for k in range(4)])
    out = upscaler.upscale_pixels(frames)
    assert fitting_tile(model.config, torch.device("cpu"), 4, pad) == 64 > upscaler._fitted_tiles[4]
    assert max(model.sizes) <= (upscaler._fitted_tiles[4] + 2 * pad) ** 2
    for frame, sr in zip(frames, out, strict=True):
        assert np.array_equal(sr, expected_rgb(reference_model, frame))


# -- devices, weights, outputs ---------------------------------------------------------------------------

def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible"):
            resolve_device("cuda:1")


@pytest.mark.skipif(cpu_backend.bf16_isa() is None, reason="this CPU or build runs no bf16 kernels")
def test_half_on_a_cpu_with_bf16_kernels_runs_them(weights):
    """half on a CPU with AVX512-BF16 is bfloat16 through the CPU kernels: close to float32 on a real photo."""
    photo = astronaut(48, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        half = Upscaler(weights, device="cpu", half=True)
    assert half.dtype == torch.bfloat16
    out, ref = half.upscale(photo).astype(float), Upscaler(weights, device="cpu").upscale(photo).astype(float)
    assert half.model.last_backend == "cpu"
    psnr = 10 * np.log10(255**2 / ((out - ref) ** 2).mean())
    assert psnr > 45, psnr


def test_half_on_a_cpu_without_bf16_kernels_runs_float32_with_a_warning(weights, monkeypatch):
    monkeypatch.setattr(cpu_backend, "bf16_isa", lambda: None)
    with pytest.warns(UserWarning, match="half precision on this CPU runs in float32: the CPU kernels run bfloat16 "
                                         "on CPUs with AVX512-BF16") as caught:
        upscaler = Upscaler(weights, device="cpu", half=True)
    assert len(caught) == 1 and upscaler.dtype == torch.float32


def test_nan_weights_are_refused_by_name(tmp_path):
    from wdsr_fast import save_model

    model = small_model()
    with torch.no_grad():
        model.tail[0].bias[0] = float("nan")
    save_model(model, tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match=r"broken.safetensors: weights hold NaN or infinite values \(tail.0.bias"):
        Upscaler(tmp_path / "broken.safetensors", device="cpu")


def test_non_finite_output_names_the_weights(weights):
    upscaler = Upscaler(weights, device="cpu", backend="torch")

    def overflow(image):
        return torch.full((1, 3, 2 * image.shape[-2], 2 * image.shape[-1]), float("inf"))

    upscaler.model.forward = overflow
    with pytest.raises(UpscaleError, match=f"NaN or infinite values with weights {weights}"):
        upscaler.upscale(astronaut())


def test_bundled_weights_are_the_default(monkeypatch, weights):
    asked = []
    for where in ("wdsr_fast.weights", "wdsr_fast.inference.upscaler"):  # the lookup, wherever it is made
        monkeypatch.setattr(f"{where}.bundled_path", lambda scale: asked.append(scale) or weights, raising=False)
    assert Upscaler(device="cpu").scale == 2 and asked == [2]
    for where in ("wdsr_fast.weights", "wdsr_fast.inference.upscaler"):
        monkeypatch.setattr(f"{where}.bundled_path", lambda scale: None, raising=False)
    with pytest.raises(ValueError, match="no bundled weights for x3"):
        Upscaler(scale=3, device="cpu")


@pytest.mark.parametrize("fmt,suffix", [("GIF", ".gif"), ("WEBP", ".webp"), ("TIFF", ".tif")])
def test_several_frames_are_refused_as_the_command_refuses_them(weights, tmp_path, fmt, suffix):
    """An animation or a multi-page file is refused by the API with the command's message (never its first frame
    alone, silently); one frame picked by the caller is upscaled."""
    from wdsr_fast.io.images import ImageError, read_image

    frames = [Image.fromarray(astronaut()), Image.fromarray(astronaut()[::-1].copy())]
    path = tmp_path / f"animated{suffix}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError) as from_file:
        read_image(path)
    upscaler = Upscaler(weights, device="cpu", backend="torch")
    with Image.open(path) as image, pytest.raises(ImageError) as from_api:
        upscaler.upscale(image)
    assert str(from_api.value) == str(from_file.value) and "has 2 frames" in str(from_api.value)
    with Image.open(path) as image:
        buffered = image.copy()  # a copy keeps no frames of the file, only the current one
    assert upscaler.upscale(buffered).size == (74, 62)
    with Image.open(path) as image:
        image.seek(1)
        with pytest.raises(ImageError, match="has 2 frames"):
            upscaler.upscale(image)  # the second frame of the file is not silently what comes back either


def _rgb_with(mode: str, transparency=None) -> Image.Image:
    image = Image.fromarray(astronaut()).convert(mode)
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


PIL_MODES = [  # (the image given, the mode that comes back, the line of Upscaler's docstring that says so)
    (lambda: _rgb_with("L"), "L", "the mode itself for\n    L, LA, RGB, RGBA and I;16"),
    (lambda: _rgb_with("RGBA"), "RGBA", "the mode itself for\n    L, LA, RGB, RGBA and I;16"),
    (lambda: Image.frombytes("I;16B", camera().shape[::-1], deep(camera()).astype(">u2").tobytes()), "I;16",
     "I;16B, I;16L, I;16N -> I;16"),
    (lambda: _rgb_with("1"), "L", "1 -> L"),
    (lambda: _rgb_with("P"), "RGB", "P -> RGB, or RGBA when the palette has a transparent entry"),
    (lambda: _rgb_with("P", transparency=0), "RGBA", "P -> RGB, or RGBA when the palette has a transparent entry"),
    (lambda: _rgb_with("PA"), "RGBA", "PA -> RGBA"),
    (lambda: _rgb_with("L", transparency=0), "LA", "L, RGB with a transparent colour"),
    (lambda: _rgb_with("RGB", transparency=(0, 0, 0)), "RGBA", "L, RGB with a transparent colour"),
    (lambda: _rgb_with("LA").convert("La"), "LA", "La -> LA, RGBa -> RGBA"),
    (lambda: _rgb_with("RGBA").convert("RGBa"), "RGBA", "La -> LA, RGBa -> RGBA"),
    (lambda: _rgb_with("RGBX"), "RGB", "RGBX, YCbCr -> RGB"),
    (lambda: _rgb_with("YCbCr"), "RGB", "RGBX, YCbCr -> RGB"),
    (lambda: _rgb_with("CMYK"), "RGB", "CMYK -> RGB"),
]


@pytest.mark.parametrize("make,mode,documented", PIL_MODES)
def test_pil_modes_come_back_as_documented(weights, make, mode, documented):
    """Modes other than the working ones cannot come back as they were (a palette, two levels, CMYK): what comes
    back for each is in Upscaler's docstring, and is what comes back."""
    image = make()
    out = Upscaler(weights, device="cpu", backend="torch").upscale(image)
    assert out.mode == mode and out.size == (2 * image.width, 2 * image.height)
    assert documented in Upscaler.__doc__


@pytest.mark.parametrize("mode", ["I", "F", "HSV"])
def test_pil_modes_that_are_refused(weights, mode):
    from wdsr_fast.io.images import ImageError

    with pytest.raises(ImageError, match=f"mode {mode!r}"):
        Upscaler(weights, device="cpu", backend="torch").upscale(_rgb_with(mode))
    assert "I (32-bit integer), F (32-bit float) and other modes are refused" in Upscaler.__doc__


@pytest.mark.parametrize("tile", [True, False, 2.5, "16"])
def test_tile_must_be_a_number_of_pixels_not_a_flag(weights, tile):
    """tile=True once ran 1-pixel tiles (a bool is an int to Python): it is refused, as are other non-integers."""
    with pytest.raises(ValueError, match=f"tile must be 'auto', None or a positive number of pixels, got {tile!r}"):
        Upscaler(weights, device="cpu", tile=tile)
    model = WDSR(variant="b", scale=2, n_feats=8, n_resblocks=1).eval()
    with pytest.raises(ValueError, match="tile must be"):
        upscale_tensor(model, torch.rand(1, 3, 6, 6), tile=tile)
    with pytest.raises(ValueError, match="tile_pad must be"):
        Upscaler(weights, device="cpu", tile=8, tile_pad=True)


def test_tile_may_be_a_numpy_integer(weights):
    upscaler = Upscaler(weights, device="cpu", tile=np.int64(9), tile_pad=np.int32(4), backend="torch")
    assert upscaler.tile == 9 and type(upscaler.tile) is int and upscaler.tile_pad == 4
    assert upscaler.upscale(astronaut()).shape == (62, 74, 3)


@pytest.mark.parametrize("tile", [None, 4])
def test_empty_batch_gives_an_empty_batch(tile):
    model = WDSR(variant="b", scale=2, n_feats=8, n_resblocks=1).eval()
    with torch.no_grad():
        assert upscale_tensor(model, torch.rand(0, 3, 9, 11), tile=tile).shape == (0, 3, 18, 22)


def test_a_dark_image_gets_no_unit_range_hint(weights):
    """The [0, 1]-input hint of FastWDSR is for tensors given by hand: the Upscaler scales pixels itself, so an 8-bit
    image whose brightest sample is 1 (1.0 in [0, 255]) is no mistake."""
    import warnings

    dark = (astronaut() > 128).astype(np.uint8)  # values 0 and 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Upscaler(weights, device="cpu", backend="torch").upscale(dark).shape == (62, 74, 3)
