"""FastWDSR as a drop-in for the reference WDSR: outputs, state_dict, training, refolding, errors."""
import warnings

import pytest
import torch
from helpers import BACKENDS, DEVICE, TOLERANCE, float64_forward, randomise, require_gpu_backend, small_wdsr

from wdsr_fast import WDSR, FastWDSR, ops
from wdsr_fast.inference.fast_wdsr import static_copy

pytestmark = pytest.mark.usefixtures("poison")  # NaN-poisoned outputs, no TF32 (conftest.py)


def small(variant, scale, **kw):
    return small_wdsr(variant, scale, res_scale=0.6, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["a", "b"])
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_matches_reference(backend, variant, scale, dtype):
    if backend == "cpu" and dtype != torch.float32:
        pytest.skip("the cpu backend runs float32 only")
    reference = small(variant, scale)
    fast = FastWDSR.from_reference(reference, backend=backend).to(DEVICE).eval()
    image = torch.rand(2, 3, 9, 13) * 255
    with torch.inference_mode():
        out = fast(image.to(DEVICE, dtype))
    assert fast.last_backend == backend
    expected = float64_forward(reference.state_dict(), reference.config, image.to(dtype))
    err = ((out.cpu().double() - expected).abs().max() / expected.abs().max()).item()
    assert out.dtype == dtype and err < TOLERANCE[dtype], err


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_input(backend):
    fast = FastWDSR.from_reference(small("b", 2), backend=backend).to(DEVICE).eval()
    image = (torch.rand(1, 3, 10, 7) * 255).to(DEVICE)
    with torch.no_grad():
        assert torch.allclose(fast(image.contiguous(memory_format=torch.channels_last)), fast(image), atol=1e-3)


def test_ychfan_normalisation_on_triton():
    if "triton" not in BACKENDS:
        pytest.skip("triton backend unavailable")
    from wdsr_fast import preset

    reference = randomise(preset("ychfan-small", 3, n_feats=8, block_feats=16, n_resblocks=2))
    reference = reference.to(DEVICE)
    fast = FastWDSR.from_reference(reference, backend="triton").eval()
    image = torch.rand(1, 3, 8, 9, device=DEVICE)
    with torch.no_grad():
        assert (fast(image) - reference(image)).abs().max() < 1e-5


def test_same_constructor_and_state_dict():
    fast = FastWDSR(variant="a", scale=3, n_feats=8, n_resblocks=2)
    reference = WDSR(variant="a", scale=3, n_feats=8, n_resblocks=2)
    assert list(fast.state_dict()) == list(reference.state_dict())
    fast.load_state_dict(reference.state_dict())
    reference.load_state_dict(fast.state_dict())
    with pytest.raises(RuntimeError, match="size mismatch"):
        fast.load_state_dict(WDSR(variant="a", scale=2, n_feats=8, n_resblocks=2).state_dict())


def test_training_runs_the_reference_path():
    fast = FastWDSR(variant="b", scale=2, n_feats=8, n_resblocks=2, backend="torch")
    out = fast(torch.rand(2, 3, 8, 8) * 255)
    assert fast.last_backend == "autograd"
    out.mean().backward()
    assert all(p.grad is not None for p in fast.parameters())


def test_refolds_when_weights_change():
    fast = FastWDSR.from_reference(small("b", 2), backend="torch").eval()
    image = torch.rand(1, 3, 8, 8) * 255
    with torch.no_grad():
        before = fast(image)
        fast.tail[0].bias.add_(1.0)  # as an optimizer step would
        after = fast(image)
        assert (after - before).abs().min() > 0.5
        fast.load_state_dict(small("b", 2, rgb_mean=(0.4488, 0.4371, 0.4040)).state_dict())
        assert torch.equal(fast(image), before)  # same seed, same weights as at first


def test_auto_picks_a_backend_and_says_which():
    fast = FastWDSR.from_reference(small("b", 2)).to(DEVICE).eval()
    with torch.no_grad():
        fast(torch.rand(1, 3, 5, 5, device=DEVICE) * 255)
    assert fast.last_backend == ops.pick_backend(DEVICE)


@pytest.mark.parametrize("image,error,match", [
    (torch.rand(1, 4, 8, 8), ValueError, "RGB"),
    (torch.randint(0, 255, (1, 3, 8, 8)), TypeError, "floating-point"),
    (torch.rand(1, 3, 8, 8, dtype=torch.float64), TypeError, "float32, float16 or bfloat16"),
    (torch.full((1, 3, 8, 8), float("nan")), ValueError, "NaN"),
])
def test_bad_input(image, error, match):
    fast = FastWDSR(variant="b", scale=2, n_feats=8, n_resblocks=1, backend="torch").eval()
    with torch.no_grad(), pytest.raises(error, match=match):
        fast(image)


def test_cpu_tensor_with_a_gpu_backend_asked_explicitly(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for backend in ("cuda", "triton"):
        fast = FastWDSR(variant="b", scale=2, n_feats=8, n_resblocks=1, backend=backend).eval()
        with torch.no_grad(), pytest.raises(RuntimeError, match="CUDA tensors only"):
            fast(torch.rand(1, 3, 8, 8))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback where the CUDA extension cannot run")
def test_unavailable_backend_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # a CPU tensor is acceptable input for a GPU backend here
    fast = FastWDSR.from_reference(small("b", 2), backend="cuda").eval()
    image = torch.rand(1, 3, 6, 6) * 255
    with torch.no_grad():
        with pytest.warns(UserWarning, match="falling back"):
            first = fast(image)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fast(image)  # no second warning
    assert fast.last_backend == ops.pick_backend("cpu")
    with torch.no_grad():
        assert (first - WDSR.forward(fast, image)).abs().max() < 1e-3


def test_model_and_input_on_different_devices():
    fast = FastWDSR(variant="b", scale=2, n_feats=8, n_resblocks=1).eval()
    with torch.no_grad(), pytest.raises(RuntimeError, match="move one of them"):
        fast(torch.rand(1, 3, 8, 8, device="meta"))


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        FastWDSR(backend="tpu")


@pytest.fixture()
def triton_block_inputs():
    """(x, weights) of a small WDSR-B block for the Triton op."""
    if "triton" not in BACKENDS:
        pytest.skip("triton backend unavailable")
    x = torch.randn(1, 8, 5, 6).to(DEVICE)
    w = [t.to(DEVICE) for t in (torch.randn(48, 8, 1, 1), torch.randn(48), torch.randn(6, 48, 1, 1), torch.randn(6),
                                torch.randn(8, 6, 3, 3), torch.randn(8))]
    return x, w


def test_torch_compile_fullgraph_of_triton_op(triton_block_inputs):
    x, w = triton_block_inputs
    op = ops.get_backend("triton").wdsr_b_block
    compiled = torch.compile(lambda x: op(x, *w, 0.5) * 2, fullgraph=True, backend="eager")
    assert torch.allclose(compiled(x), op(x, *w, 0.5) * 2)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", [b for b in ops.BACKENDS if b != "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_whole_model_1080p_gpu(backend, dtype):
    require_gpu_backend(backend)
    from wdsr_fast import preset

    reference = randomise(preset("wdsr-b-32x16", 2)).cuda()
    image = torch.rand(1, 3, 540, 960, device="cuda") * 255
    expected = float64_forward(reference.state_dict(), reference.config, image.to(dtype).double())
    for graphs in (False, True):
        fast = FastWDSR.from_reference(reference, backend=backend, cuda_graphs=graphs).eval()
        with torch.inference_mode():
            out = fast(image.to(dtype))
        err = ((out.double() - expected).abs().max() / expected.abs().max()).item()
        assert err < TOLERANCE[dtype], (graphs, err)


def test_cuda_graph_static_input_is_an_ordinary_tensor():
    """A graph captured under inference_mode replays under no_grad: its static input (made by static_copy) is an
    ordinary tensor, which copy_ accepts in either mode; a plain clone made under inference_mode is not."""
    with torch.inference_mode():
        image = torch.rand(1, 3, 4, 4)
        static, clone = static_copy(image), image.clone()
    assert clone.is_inference() and not static.is_inference()
    with torch.no_grad():
        static.copy_(torch.rand(1, 3, 4, 4))
        with pytest.raises(RuntimeError, match="inference tensor"):
            clone.copy_(torch.rand(1, 3, 4, 4))
    with torch.inference_mode():
        static.copy_(torch.rand(1, 3, 4, 4))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", [b for b in ops.BACKENDS if b != "torch"])
def test_cuda_graph_replays_across_inference_mode_and_no_grad_gpu(backend):
    require_gpu_backend(backend)
    fast = FastWDSR.from_reference(small("b", 2), backend=backend, cuda_graphs=True).cuda().eval()
    images = [torch.rand(1, 3, 9, 13, device="cuda") * 255 for _ in range(3)]
    with torch.inference_mode():
        first = fast(images[0])  # captured here
    with torch.no_grad():
        second = fast(images[1])  # replayed here
    with torch.inference_mode():
        third = fast(images[2])
    plain = FastWDSR.from_reference(small("b", 2), backend=backend).cuda().eval()
    with torch.no_grad():
        for image, out in zip(images, (first, second, third), strict=True):
            assert torch.allclose(out, plain(image), atol=1e-3)


@pytest.mark.gpu
def test_wide_wdsr_b_falls_back_from_cuda_on_gpu():
    require_gpu_backend("cuda")
    model = randomise(WDSR(variant="b", scale=2, n_feats=48, n_resblocks=1))
    auto = FastWDSR.from_reference(model).cuda().eval()
    asked = FastWDSR.from_reference(model, backend="cuda").cuda().eval()
    image = torch.rand(1, 3, 20, 20, device="cuda") * 255
    with torch.no_grad():
        auto(image)
        with pytest.warns(UserWarning, match="n_feats <= 32"):
            asked(image)
    assert auto.last_backend == asked.last_backend == "triton"


def test_caches_key_on_the_kernel_settings(monkeypatch):
    """The folded weights and the CUDA graphs are kept per TF32 setting and Triton and CUDA C++ block variant: a graph
    captured with TF32 (or one block kernel) is not replayed once the setting changed. The graph is a stand-in (no
    GPU)."""
    from wdsr_fast.inference import fast_wdsr

    captured = []

    class Graph:
        def __init__(self, backend_ops, folded, image):
            captured.append(ops.kernel_settings())

        def __call__(self, image):
            return image

    monkeypatch.setattr(fast_wdsr, "_Graph", Graph)
    fast = FastWDSR.from_reference(small("b", 2), backend="torch").eval()
    image = torch.rand(1, 3, 6, 7) * 255
    seen = set()
    settings = [(tf32, triton, cuda) for tf32 in (True, False) for triton in ops.TRITON_BLOCK_VARIANTS
                for cuda in ops.CUDA_BLOCK_VARIANTS]
    with torch.no_grad():
        for tf32, triton, cuda in settings:
            torch.backends.cudnn.allow_tf32 = tf32  # the poison fixture restores it
            with ops.use_triton_block_variant(triton), ops.use_cuda_block_variant(cuda):
                assert ops.kernel_settings() == (tf32, triton, cuda)
                folded = fast.folded(image.device, image.dtype)
                fast._replay("torch", folded, image)
                fast._replay("torch", folded, image)  # the same settings: replayed, not captured again
                seen.add(id(folded))
    assert captured == settings
    assert len(seen) == len(fast._folded) == 8


def test_triton_block_variant_setting(monkeypatch):
    monkeypatch.delenv(ops.TRITON_BLOCK_ENV, raising=False)
    assert ops.triton_block_variant() == "tiled"  # the kernel measured on an H100 until the new one is
    monkeypatch.setenv(ops.TRITON_BLOCK_ENV, "persistent")
    assert ops.triton_block_variant() == "persistent"
    with ops.use_triton_block_variant("tiled"):
        assert ops.triton_block_variant() == "tiled"
    monkeypatch.setenv(ops.TRITON_BLOCK_ENV, "fastest")
    with pytest.raises(ValueError, match="WDSR_FAST_TRITON_BLOCK='fastest'"):
        ops.triton_block_variant()
    with pytest.raises(ValueError, match="unknown Triton block variant"):
        with ops.use_triton_block_variant("nope"):
            pass


def test_cuda_block_variant_setting(monkeypatch):
    """$WDSR_FAST_CUDA_BLOCK chooses the CUDA C++ block kernel, a context overrides it; the Triton one is separate."""
    monkeypatch.delenv(ops.CUDA_BLOCK_ENV, raising=False)
    monkeypatch.delenv(ops.TRITON_BLOCK_ENV, raising=False)
    assert ops.cuda_block_variant() == "tiled"  # the kernel measured on an H100 until the persistent one is
    monkeypatch.setenv(ops.CUDA_BLOCK_ENV, "persistent")
    assert ops.cuda_block_variant() == "persistent" and ops.triton_block_variant() == "tiled"
    with ops.use_cuda_block_variant("tiled"):
        assert ops.cuda_block_variant() == "tiled"
    assert ops.cuda_block_variant() == "persistent"
    monkeypatch.setenv(ops.CUDA_BLOCK_ENV, "fastest")
    with pytest.raises(ValueError, match="WDSR_FAST_CUDA_BLOCK='fastest'"):
        ops.cuda_block_variant()
    with pytest.raises(ValueError, match="unknown CUDA block variant"):
        with ops.use_cuda_block_variant("nope"):
            pass


def test_refolds_after_parameters_are_replaced():
    """The cached parameter list follows new Parameter objects (assignment, load_state_dict(assign=True))."""
    fast = FastWDSR.from_reference(small("b", 2), backend="torch").eval()
    image = torch.rand(1, 3, 8, 8) * 255
    with torch.no_grad():
        before = fast(image)
        fast.tail[0].bias = torch.nn.Parameter(fast.tail[0].bias + 1.0)
        assert (fast(image) - before).abs().min() > 0.5
        fast.load_state_dict(small("b", 2).state_dict(), assign=True)
        assert torch.equal(fast(image), before)
        fast.half().float()  # _apply may swap parameter objects
        assert (fast(image) - before).abs().max() < 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_whole_model_under_torch_compile(backend):
    """torch.compile traces a FastWDSR whole (fullgraph) once the finite check, a host sync, is off; weight norm is
    folded inside the graph, so a weight change reaches the compiled model too."""
    fast = FastWDSR.from_reference(small("b", 2), backend=backend, check_finite=False).to(DEVICE).eval()
    image = (torch.rand(1, 3, 9, 11) * 255).to(DEVICE)
    with torch.no_grad():
        expected = fast(image)
        compiled = torch.compile(fast, backend="eager", fullgraph=True)
        assert torch.allclose(compiled(image), expected, atol=1e-4)
        fast.tail[0].bias.add_(1.0)  # the compiled model folds the current weights, like the eager one
        changed = compiled(image)
        assert (changed - expected).abs().min() > 0.5 and torch.allclose(changed, fast(image), atol=1e-4)
    assert fast.last_backend == backend


@pytest.mark.parametrize("how", ["eval", "train", "load_state_dict", "to", "refold"])
@pytest.mark.parametrize("edit", ["copy_", "mul_"])
def test_refolds_after_edits_through_data(how, edit):
    """Edits through ``p.data`` leave no trace on the parameter; each documented call makes FastWDSR see them."""
    fast = FastWDSR.from_reference(small("b", 2), backend="torch").eval()
    image = torch.rand(1, 3, 8, 8) * 255
    with torch.no_grad():
        before = fast(image)
        bias = fast.tail[0].bias
        if edit == "copy_":
            bias.data.copy_(bias.data + 1.0)
        else:
            bias.data.mul_(3.0).add_(1.0)
        assert torch.equal(fast(image), before), "the edit is invisible without a refold (else this test is moot)"
        {"eval": lambda: fast.eval(), "train": lambda: fast.train(),
         "load_state_dict": lambda: fast.load_state_dict(fast.state_dict()),
         "to": lambda: fast.to(torch.float32), "refold": fast.refold}[how]()
        after = fast(image)
    expected = WDSR.forward(fast, image)
    assert (after - before).abs().max() > 0.5
    assert (after - expected).abs().max() < 1e-3


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_frozen_model_passes_gradients_to_its_input(backend):
    """A frozen model as a differentiable layer (perceptual losses, attacks): an input that requires grad makes
    autograd record the forward, so the trainable path runs and the input's gradient is the reference's."""
    reference = small("b", 2)
    fast = FastWDSR.from_reference(reference, backend=backend).eval().requires_grad_(False)
    reference.requires_grad_(False)
    image = torch.rand(1, 3, 7, 9) * 255
    x = image.clone().requires_grad_(True)
    out = fast(x)
    assert fast.last_backend == "autograd" and out.requires_grad
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    x_ref = image.clone().requires_grad_(True)
    (reference(x_ref) * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, x_ref.grad, rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in fast.parameters())
    with torch.no_grad():
        fast(x)  # no recording, no autograd path: the fused ops run
    assert fast.last_backend != "autograd"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grad", [False, True])
def test_empty_batch_gives_an_empty_batch(backend, grad):
    """(0, 3, H, W) -> (0, 3, sH, sW), as for any other batch size, on every path (a filtered batch can be empty);
    an image of 0 pixels is still refused."""
    reference = small("b", 3)
    fast = FastWDSR.from_reference(reference, backend=backend).to(DEVICE).train(grad)
    image = torch.rand(0, 3, 5, 7, device=DEVICE) * 255
    with torch.set_grad_enabled(grad):
        for model in (reference.to(DEVICE), fast):
            out = model(image)
            assert out.shape == (0, 3, 15, 21) and out.dtype == image.dtype and out.device == image.device
            assert out.requires_grad == grad
    assert fast.last_backend == ("autograd" if grad else backend)
    for model in (reference, fast):
        with torch.no_grad(), pytest.raises(ValueError, match=r"empty image \(1, 3, 0, 7\)"):
            model(torch.rand(1, 3, 0, 7, device=DEVICE))


@pytest.mark.parametrize("how", ["training", "frozen, input requires grad"])
def test_nan_input_on_the_autograd_path(how):
    """The autograd path refuses NaN/inf input as the fused path does (check_finite), and only then."""
    fast = FastWDSR.from_reference(small("b", 2), backend="torch")
    if how == "training":
        fast.train()
    else:
        fast.eval().requires_grad_(False)
    for bad in (float("nan"), float("inf"), -float("inf")):
        image = torch.rand(1, 3, 8, 8) * 255
        image[0, 1, 3, 4] = bad
        image.requires_grad_(how != "training")
        with pytest.raises(ValueError, match="input image contains NaN or infinite values"):
            fast(image)
    fast.check_finite = False
    assert torch.isnan(fast(image * float("nan"))).all() and fast.last_backend == "autograd"


@pytest.mark.parametrize("path", ["fused", "autograd"])
def test_unit_range_input_warns_once(path):
    """Pixels in [0, 1] given to a model of rgb_range 255 get one hint per model, from the finite check's sync."""
    fast = FastWDSR.from_reference(small("b", 2), backend="torch").train(path == "autograd")
    with torch.set_grad_enabled(path == "autograd"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fast(torch.rand(1, 3, 8, 8) * 255)  # an ordinary image
            fast(torch.zeros(1, 3, 8, 8))  # all black: nothing to say
        with pytest.warns(UserWarning, match=r"largest value is 0\.9.*at most 1.*rgb_range 255.*\[0, 1\]"):
            fast(torch.rand(1, 3, 8, 8) * 0.99)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fast(torch.rand(1, 3, 8, 8))  # once per model
    other = FastWDSR.from_reference(small("b", 2), backend="torch").train(path == "autograd")
    with torch.set_grad_enabled(path == "autograd"), warnings.catch_warnings():
        warnings.simplefilter("error")
        FastWDSR.from_reference(small("b", 2, rgb_range=1.0), backend="torch")(torch.rand(1, 3, 8, 8))  # [0, 1] model
        other.check_finite = False
        other(torch.rand(1, 3, 8, 8))  # no finite check, no sync: no hint either
