"""The bundled weights load, and beat bicubic on photos held out of their training (see MODEL_CARD.md)."""
import pytest
import torch
from skimage import data

from wdsr_fast import FastWDSR, load_model
from wdsr_fast.data.imresize import imresize
from wdsr_fast.image_io import tensor_to_uint8, uint8_to_tensor
from wdsr_fast.metrics import psnr_y
from wdsr_fast.weights import bundled_path

HELD_OUT = {"astronaut": (slice(40, 184), slice(150, 294)), "chelsea": (slice(60, 204), slice(150, 294))}


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("photo", sorted(HELD_OUT))
def test_beats_bicubic_on_held_out_photo(scale, photo):
    path = bundled_path(scale)
    if path is None:
        pytest.skip(f"no bundled weights for x{scale} in this install")
    model = load_model(path)
    cfg = model.config
    assert (cfg.variant, cfg.n_feats, cfg.n_resblocks, cfg.scale) == ("b", 32, 16, scale)
    hr = getattr(data, photo)()[HELD_OUT[photo]]  # 144 x 144: a multiple of 2, 3 and 4
    lr = imresize(hr, 1 / scale)
    with torch.inference_mode():
        sr = tensor_to_uint8(FastWDSR.from_reference(model, backend="torch").eval()(uint8_to_tensor(lr, 255.0)), 255.0)
    assert psnr_y(sr, hr, scale) > psnr_y(imresize(lr, scale), hr, scale)
