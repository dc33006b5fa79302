"""The reference WDSR against an independent float64 re-computation, parameter counts, folding, config errors."""
import pytest
import torch
from helpers import float64_forward, randomise
from torch.nn import functional as F

import wdsr_fast
from wdsr_fast import WDSR, count_parameters, fold, folded_copy, preset


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("variant", ["a", "b"])
def test_reference_matches_float64(variant, scale):
    model = randomise(WDSR(variant=variant, scale=scale, n_feats=8, n_resblocks=3, block_feats=24, res_scale=0.7))
    image = torch.rand(2, 3, 11, 14) * 255
    with torch.no_grad():
        out = model(image)
    expected = float64_forward(model.state_dict(), model.config, image)
    assert out.shape == (2, 3, 11 * scale, 14 * scale)
    rel = (out.double() - expected).abs().max() / expected.abs().max()
    assert rel < 1e-5, rel


def test_float64_forward_runs_on_the_inputs_device():
    """The float64 reference runs where its inputs are (the GPU tests call it with CUDA tensors); meta tensors stand
    in for another device here."""
    model = WDSR(variant="b", scale=3, n_feats=8, n_resblocks=1).to("meta")
    out = float64_forward(model.state_dict(), model.config, torch.empty(2, 3, 5, 7, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 3, 15, 21) and out.dtype == torch.float64


def test_ychfan_normalisation_matches_float64():
    model = randomise(preset("ychfan-small", 2, n_resblocks=2, n_feats=8, block_feats=16))
    image = torch.rand(1, 3, 9, 7)  # [0, 1] input
    with torch.no_grad():
        out = model(image)
    expected = float64_forward(model.state_dict(), model.config, image)
    assert (out.double() - expected).abs().max() < 1e-5


@pytest.mark.parametrize("scale,count", [(2, 1_190_100), (3, 1_195_605), (4, 1_203_312)])
def test_wdsr_a_baseline_parameter_count(scale, count):
    assert count_parameters(preset("wdsr-a-baseline", scale)) == count


@pytest.mark.parametrize("scale,count", [(2, 303_604), (3, 309_109), (4, 316_816)])
def test_wdsr_b_parameter_count(scale, count):
    model = preset("wdsr-b-32x16", scale)
    assert count_parameters(model) == count
    assert model.body[0].body[0].weight_v.shape == (192, 32, 1, 1)  # expand
    assert model.body[0].body[2].weight_v.shape == (25, 192, 1, 1)  # low-rank reduce: int(32 * 0.8)


def test_authors_key_layout():
    keys = list(preset("wdsr-b-32x16", 2, n_resblocks=1).state_dict())
    assert keys == [f"{p}.{t}" for p in ("head.0", "body.0.body.0", "body.0.body.2", "body.0.body.3", "tail.0",
                                          "skip.0") for t in ("bias", "weight_g", "weight_v")]


@pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated:FutureWarning")  # the legacy API on purpose
@pytest.mark.parametrize("variant", ["a", "b"])
def test_fold_is_exact(variant):
    model = randomise(WDSR(variant=variant, scale=3, n_feats=8, n_resblocks=2, block_feats=16))
    image = torch.rand(2, 3, 10, 13) * 255
    with torch.no_grad():
        assert torch.equal(folded_copy(model)(image), model(image))
        folded = fold(model)
        conv = model.body[1].body[0]
        assert torch.equal(folded.blocks[1][0], torch._weight_norm(conv.weight_v, conv.weight_g, 0))
        legacy = torch.nn.utils.weight_norm(torch.nn.Conv2d(8, conv.weight_v.shape[0], conv.kernel_size))
        legacy.weight_g.copy_(conv.weight_g)
        legacy.weight_v.copy_(conv.weight_v)
        legacy.bias.copy_(conv.bias)
        x = torch.randn(1, 8, 6, 6)
        assert torch.equal(F.conv2d(x, *folded.blocks[1][:2]), legacy(x))


def test_trainable():
    model = preset("wdsr-b-32x16", 2, n_resblocks=2)
    model(torch.rand(1, 3, 8, 8) * 255).abs().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("kwargs,match", [
    (dict(variant="c"), "variant"),
    (dict(scale=5), "scale"),
    (dict(n_feats=0), "n_feats"),
    (dict(low_rank=0.01), "low_rank"),
    (dict(rgb_mean=(0.5, 0.5)), "rgb_mean"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WDSR(**kwargs)


@pytest.mark.parametrize("image,error,match", [
    (torch.rand(1, 4, 8, 8), ValueError, "RGB"),
    (torch.rand(3, 8, 8), ValueError, "RGB"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), TypeError, "floating-point"),
])
def test_bad_input(image, error, match):
    with pytest.raises(error, match=match):
        preset("wdsr-b-32x16", 2, n_resblocks=1)(image)


def test_unknown_preset():
    with pytest.raises(ValueError, match="wdsr-b-32x16"):
        wdsr_fast.preset("nope")
