"""MATLAB-compatible bicubic imresize against values derived by hand from MATLAB's documented rules."""
import numpy as np
import pytest

from wdsr_fast.train.imresize import contributions, cubic, imresize

# Shrinking by 2: kernel 0.5 * cubic(0.5 * d) at distances d = +-0.5, +-1.5, +-2.5, +-3.5 (worked out by hand:
# cubic(0.25) = 0.8671875, cubic(0.75) = 0.2265625, cubic(1.25) = -0.0703125, cubic(1.75) = -0.0234375).
HALF = np.array([-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875])


def test_cubic_kernel_values():
    assert np.allclose(cubic(np.array([0, 0.25, 0.5, 1, 1.25, 1.5, 2, 2.5])),
                       [1, 0.8671875, 0.5625, 0, -0.0703125, -0.0625, 0, 0])


def test_half_scale_weights_and_mirrored_border():
    weights, indices = contributions(20, 10, 0.5)
    assert np.allclose(weights[4], HALF) and list(indices[4]) == list(range(5, 13))
    # output 1 samples u = 1.5 (1-based): taps at -3..6 -> mirrored 0-based [3, 2, 1, 0, 0, 1, 2, 3, 4, 5] minus
    # the zero-weight ends
    assert list(indices[0]) == [2, 1, 0, 0, 1, 2, 3, 4]
    assert np.allclose(weights.sum(axis=1), 1)


def test_double_scale_weights():
    weights, indices = contributions(10, 20, 2.0)
    assert np.allclose(weights[5], [-0.0703125, 0.8671875, 0.2265625, -0.0234375])  # u = 3.25
    assert list(indices[5]) == [1, 2, 3, 4]


def test_one_dimensional_signal():
    signal = np.arange(16, dtype=np.float64) ** 2
    out = imresize(signal[None, :], 0.5)  # rows untouched (scale 0.5 on a 1-row image mirrors itself)
    assert out.shape == (1, 8)
    assert np.isclose(out[0, 3], HALF @ signal[3:11])


@pytest.mark.parametrize("scale,shape", [(0.5, (4, 5)), (1 / 3, (3, 3)), (0.25, (2, 3)), (2, (14, 18)), (3, (21, 27))])
def test_sizes_and_constant_images(scale, shape):
    image = np.full((7, 9, 3), 123, np.uint8)
    out = imresize(image, scale)
    assert out.shape == shape + (3,) and out.dtype == np.uint8 and np.all(out == 123)


def test_uint8_rounding_halves_up():
    image = np.array([[0, 1, 0, 1]], np.uint8)
    out = imresize(image.astype(np.float64), 2.0)
    assert np.array_equal(imresize(image, 2.0), np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8))


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        imresize(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="image"):
        imresize(np.zeros((0, 4)), 0.5)
