"""WDSR in spandrel: ModelLoader loads our files and the authors' layouts into a descriptor whose model matches
wdsr_fast on a real photo; detection claims no checkpoint of any architecture spandrel registers.

spandrel imports torchvision, which must match the installed torch: these tests skip (with the reason) where
spandrel cannot be imported; CI runs them in a venv with torch 2.14.1 and torchvision 0.29.1 (.ci/deploy_tests).
"""
import inspect
import sys

import pytest
import torch
from helpers import parametrizations_keys, photo, ychfan_state

import wdsr_fast
from wdsr_fast import WDSR, FastWDSR, preset
from wdsr_fast.weights import bundled_path

try:
    import spandrel
except Exception as exc:  # ImportError, or torchvision failing to load beside this torch
    pytest.skip(f"spandrel cannot be imported here ({type(exc).__name__}: {str(exc)[:120]})", allow_module_level=True)

from wdsr_fast.deploy import spandrel as wdsr_spandrel  # noqa: E402  (needs spandrel)

wdsr_spandrel.install()

# Arguments for architectures whose network class has required ones (small but valid values).
CONSTRUCTOR_ARGS = {
    "SPAN": dict(num_in_ch=3, num_out_ch=3),
    "MMRealSR": dict(num_in_ch=3, num_out_ch=3),
    "SAFMN": dict(dim=36),
    "SAFMNBCIE": dict(dim=36),
    "SwinIR": dict(window_size=8),  # the class defaults (img_size 64, window 7) do not build
    "Swin2SR": dict(window_size=8),
    "AuraSR": dict(dim=64, image_size=None, input_image_size=None,
                   style_network={"dim_in": 128, "dim_out": 512, "depth": 4}),
}
OTHER_ARCHITECTURES = [s for s in spandrel.MAIN_REGISTRY.architectures() if s.architecture.id != "WDSR"]


def load_file(path):
    return spandrel.ModelLoader().load_from_file(path)


def wdsr_output(model: WDSR, image: torch.Tensor) -> torch.Tensor:
    """wdsr_fast's reference on a [0, 1] image, as spandrel returns it ([0, 1], clamped)."""
    with torch.no_grad():
        return (model(image * model.config.rgb_range) / model.config.rgb_range).clamp(0, 1)


def assert_matches(descriptor, model: WDSR, tolerance=1e-5):
    image = photo(37, 52)
    out = descriptor(image)
    assert out.shape == (1, 3, 37 * model.config.scale, 52 * model.config.scale)
    assert descriptor.model.last_backend != "autograd"  # spandrel's call runs the fused inference path
    expected = wdsr_output(model, image)
    assert (out - expected).abs().max().item() < tolerance


def test_install_is_idempotent():
    assert wdsr_spandrel.install() is False  # installed at import of this module
    assert [s.architecture.id for s in spandrel.MAIN_REGISTRY].count("WDSR") == 1


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bundled_weights(scale):
    path = bundled_path(scale)
    if path is None:
        pytest.skip(f"no bundled x{scale} weights in this install")
    descriptor = load_file(path)
    assert isinstance(descriptor, spandrel.ImageModelDescriptor) and descriptor.architecture.id == "WDSR"
    assert (descriptor.scale, descriptor.input_channels, descriptor.output_channels) == (scale, 3, 3)
    assert descriptor.purpose == "SR" and descriptor.supports_half and descriptor.supports_bfloat16
    assert descriptor.size_requirements.none and descriptor.tiling == spandrel.ModelTiling.SUPPORTED
    assert descriptor.tags == ["WDSR-B", "32nf", "16nb", "192wide"]
    assert isinstance(descriptor.model, FastWDSR)
    assert_matches(descriptor, wdsr_fast.load_model(path))


def jiahuiyu_file(tmp_path, model, how):
    """``model`` saved as a JiahuiYu-layout .pth (our keys), in one of the forms such files come in."""
    state = model.state_dict()
    if how == "params_ema+module":
        saved = {"params_ema": {f"module.{k}": v for k, v in state.items()}, "iter": 5}
    elif how == "parametrizations":
        saved = parametrizations_keys(state)
    elif how == "plain":
        saved = wdsr_fast.folded_copy(model).state_dict()
    else:
        saved = state
    path = tmp_path / f"jiahuiyu_{how}.pth"
    torch.save(saved, path)
    return path


@pytest.mark.parametrize("how", ["bare", "params_ema+module", "parametrizations", "plain"])
@pytest.mark.parametrize("variant,scale", [("a", 3), ("b", 2)])
def test_jiahuiyu_layout(tmp_path, how, variant, scale):
    torch.manual_seed(1)
    model = WDSR(variant=variant, scale=scale, n_feats=16, n_resblocks=3, block_feats=40, expansion=4).eval()
    descriptor = load_file(jiahuiyu_file(tmp_path, model, how))
    assert descriptor.architecture.id == "WDSR" and descriptor.scale == scale
    assert descriptor.tags[0] == f"WDSR-{variant.upper()}"
    assert_matches(descriptor, model)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("wrapper", ["model_state_dict", None])
def test_ychfan_layout(tmp_path, scale, wrapper):
    """The ychfan/wdsr epoch_30.pth layout: [0, 1] pixels, mean 0.5, one body Sequential, weights under a key."""
    torch.manual_seed(2)
    model = preset("ychfan-small", scale, n_feats=8, block_feats=32, n_resblocks=3).eval()
    state = ychfan_state(model)
    path = tmp_path / "epoch_30.pth"
    torch.save({wrapper: state, "epoch": 30} if wrapper else state, path)
    descriptor = load_file(path)
    assert descriptor.architecture.id == "WDSR" and "ychfan" in descriptor.tags
    assert_matches(descriptor, wdsr_fast.load_model(path))
    assert_matches(descriptor, model)


def test_half_bfloat16_and_gradients():
    torch.manual_seed(3)
    model = WDSR(variant="b", scale=2, n_feats=16, n_resblocks=2).eval()
    descriptor = spandrel.MAIN_REGISTRY.load(model.state_dict())
    assert descriptor(photo(1, 1)).shape == (1, 3, 2, 2)  # no size requirement: even one pixel runs
    image = photo(20, 24)
    expected = wdsr_output(model, image)
    for dtype, tolerance in ((torch.float16, 5e-3), (torch.bfloat16, 3e-2)):
        descriptor.to(dtype)
        out = descriptor(image.to(dtype))
        assert out.dtype == dtype and (out.double() - expected).abs().max() < tolerance
    descriptor.float().train()
    out = descriptor.model(image)  # autograd on: the trainable reference
    assert descriptor.model.last_backend == "autograd"
    out.mean().backward()
    assert descriptor.model.head[0].weight_v.grad is not None


def default_state_dict(support) -> dict:
    """The state_dict of an architecture's network class built with its default arguments (shapes only where
    the class builds on the meta device)."""
    module = sys.modules[type(support.architecture).__module__]
    classes = [obj for name in getattr(module, "__all__", ()) if inspect.isclass(obj := getattr(module, name))
               and issubclass(obj, torch.nn.Module)]
    assert classes, f"no network class found for {support.architecture.id}"
    kwargs = CONSTRUCTOR_ARGS.get(support.architecture.id, {})
    try:
        with torch.device("meta"):
            return classes[0](**kwargs).state_dict()
    except (RuntimeError, NotImplementedError):  # classes that compute with tensor values at construction
        return classes[0](**kwargs).state_dict()


@pytest.mark.parametrize("support", OTHER_ARCHITECTURES, ids=lambda s: s.architecture.id)
def test_other_architectures_not_claimed(support):
    state = default_state_dict(support)
    assert state and not wdsr_spandrel.detect(state)
    assert not wdsr_spandrel.detect(spandrel.canonicalize_state_dict({"params_ema": state}))


def edsr_state(n_feats=64, n_resblocks=4, scale=2) -> dict:
    """EDSR's keys and shapes (EDSR-PyTorch; spandrel has no EDSR): head, plain 3x3 blocks, tail, no skip."""
    conv = lambda o, i, k=3: {"weight": torch.zeros(o, i, k, k), "bias": torch.zeros(o)}  # noqa: E731
    layers = {"sub_mean": conv(3, 3, 1), "add_mean": conv(3, 3, 1), "head.0": conv(n_feats, 3)}
    for i in range(n_resblocks):
        layers.update({f"body.{i}.body.0": conv(n_feats, n_feats), f"body.{i}.body.2": conv(n_feats, n_feats)})
    layers.update({f"body.{n_resblocks}": conv(n_feats, n_feats), "tail.0.0": conv(4 * n_feats, n_feats),
                   "tail.1": conv(3, n_feats)})
    return {f"{name}.{kind}": t for name, tensors in layers.items() for kind, t in tensors.items()}


def test_near_misses_not_claimed():
    assert not wdsr_spandrel.detect(edsr_state())
    torch.manual_seed(4)
    good = WDSR(variant="a", scale=2, n_feats=8, n_resblocks=2, block_feats=16).state_dict()
    assert wdsr_spandrel.detect(good)
    assert not wdsr_spandrel.detect({**good, "extra.weight": torch.zeros(3)})
    assert not wdsr_spandrel.detect({k: v for k, v in good.items() if not k.startswith("skip.")})
    assert not wdsr_spandrel.detect({**good, "skip.0.weight_v": torch.zeros(12, 3, 3, 3)})  # skip must be 5x5
    assert not wdsr_spandrel.detect({**good, "head.0.weight_v": torch.zeros(8, 4, 3, 3)})  # 4-channel input
    five = WDSR(variant="a", scale=4, n_feats=8, n_resblocks=2, block_feats=16).state_dict()
    five = {k: (torch.zeros(75, *v.shape[1:]) if k.startswith(("tail.", "skip.")) else v)  # 3 * 5**2 outputs
            for k, v in five.items()}
    assert not wdsr_spandrel.detect(five)
    assert not wdsr_spandrel.detect({**good, "note": "not a tensor"})
    with pytest.raises(spandrel.UnsupportedModelError):
        spandrel.MAIN_REGISTRY.load(edsr_state())
