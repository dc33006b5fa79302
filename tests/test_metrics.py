"""PSNR/SSIM on Y against scikit-image's independent implementations."""
import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from wdsr_fast.train.metrics import psnr_rgb, psnr_y, rgb_to_y, ssim_y


@pytest.fixture(scope="module")
def pair():
    hr = data.astronaut()[100:180, 150:250]
    noise = np.random.default_rng(0).normal(0, 6, hr.shape)
    return np.clip(hr + noise, 0, 255).round().astype(np.uint8), hr


def test_y_is_bt601_studio_swing():
    assert np.allclose(rgb_to_y(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)), [[16, 235]], atol=1e-3)


def test_psnr_matches_skimage(pair):
    sr, hr = pair
    y_sr, y_hr = rgb_to_y(sr)[4:-4, 4:-4], rgb_to_y(hr)[4:-4, 4:-4]
    assert psnr_y(sr, hr, 4) == pytest.approx(peak_signal_noise_ratio(y_hr, y_sr, data_range=255), abs=1e-9)
    assert psnr_rgb(sr, hr, 2) == pytest.approx(peak_signal_noise_ratio(hr[2:-2, 2:-2], sr[2:-2, 2:-2]), abs=1e-9)


def test_ssim_matches_skimage(pair):
    sr, hr = pair
    y_sr, y_hr = rgb_to_y(sr)[3:-3, 3:-3], rgb_to_y(hr)[3:-3, 3:-3]
    expected = structural_similarity(y_hr, y_sr, data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert ssim_y(sr, hr, 3) == pytest.approx(expected, abs=1e-6)
    assert ssim_y(hr, hr, 3) == pytest.approx(1.0)


def test_bad_inputs(pair):
    sr, hr = pair
    with pytest.raises(ValueError, match="same shape"):
        psnr_y(sr[:-1], hr, 2)
    with pytest.raises(ValueError, match="too small"):
        psnr_y(sr[:8, :8], hr[:8, :8], 4)
