"""Functions and constants shared by the test files (no test file imports another; fixtures are in conftest.py).

Inputs are made on ``DEVICE`` (the GPU where there is one) from seeded CPU generators, so that every backend and
every machine sees the same numbers. Parity is measured as ``rel_error``: max |out - ref| / max |ref| over the
whole output, against a float64 reference, with a tolerance per dtype (``TOLERANCE``).
"""
from __future__ import annotations

import inspect
import re
import signal

import pytest
import torch
from torch.nn import functional as F

from wdsr_fast import WDSR, ops
from wdsr_fast.ops import reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# bf16 only on GPU: the Triton interpreter's bf16 arithmetic is wrong.
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])
TOLERANCE = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 2e-2}
BACKENDS = [b for b in ops.BACKENDS if ops.unavailable_reason(b, DEVICE) is None]  # those that run here
MEAN = torch.tensor([114.4, 111.5, 103.0])  # a mean in pixel units, (3,) fp32


def sigint_as_in_a_terminal() -> None:
    """Ctrl-C's default action for a child process (``preexec_fn``), as under a terminal: a test run started in the
    background inherits SIGINT ignored, and so would the command it tests."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert out.shape == ref.shape
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


def weights(*shapes, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(s, generator=gen) * (0.3 if len(s) > 1 else 0.1)).to(DEVICE, dtype) for s in shapes]


def features(n, c, h, w, dtype, channels_last, seed=1):
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed)).to(DEVICE, dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def image(n, h, w, dtype, seed=2):
    return (torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255).to(DEVICE, dtype)


def op_args(name: str, dtype=torch.float32) -> list:
    """Small valid arguments for op ``name`` of the op contract (channels_last features, 8 channels, odd sizes)."""
    x = features(2, 8, 5, 7, dtype, True)
    if name == "head_conv":
        return [image(2, 5, 7, dtype)] + weights((8, 3, 3, 3), (8,), dtype=dtype) + [MEAN.to(DEVICE), 127.5]
    if name == "wdsr_a_block":
        return [x] + weights((24, 8, 3, 3), (24,), (8, 24, 3, 3), (8,), dtype=dtype) + [0.5]
    if name == "wdsr_b_block":
        return [x] + weights((48, 8, 1, 1), (48,), (6, 48, 1, 1), (6,), (8, 6, 3, 3), (8,), dtype=dtype) + [0.7]
    if name == "tail_shuffle":
        return [x, image(2, 5, 7, dtype)] + weights((27, 8, 3, 3), (27,), (27, 3, 5, 5), (27,), dtype=dtype) + [
            MEAN.to(DEVICE), 127.5, 3]
    raise ValueError(f"unknown op {name!r}")


SCHEMA_TYPES = {torch.Tensor: "Tensor", float: "float", int: "int"}  # reference.py's annotations as schemas name them


def assert_schema_is_the_reference(op) -> None:
    """A registered op (a ``torch.ops`` overload) takes the arguments of its namesake in ``reference.py``, by name,
    in order and of the same types, and returns one Tensor: its schema is the op contract."""
    schema = op._schema
    spec = inspect.signature(getattr(reference, schema.name.split("::")[-1]), eval_str=True)
    expected = [(name, SCHEMA_TYPES[p.annotation]) for name, p in spec.parameters.items()]
    arguments = [(a.name, str(a.type).replace("SymInt", "int")) for a in schema.arguments]  # custom_op: SymInt
    assert arguments == expected, str(schema)
    assert [str(r.type) for r in schema.returns] == [SCHEMA_TYPES[spec.return_annotation]], str(schema)


def require_gpu_backend(backend):
    """Skip, saying why, unless ``backend`` can run on the GPU here."""
    reason = ops.unavailable_reason(backend, "cuda")
    if reason:
        pytest.skip(reason)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fresh non-trivial weights (biases and gains too), so no term of the forward can hide."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2 + (0.5 if p.dim() == 4 and p.shape[1:] == (1, 1, 1)
                                                                  else 0.0))
    return model


def small_wdsr(variant="b", scale=2, **overrides) -> WDSR:
    """A small randomised WDSR: 8 features, 2 blocks, WDSR-A blocks 16 wide (``overrides`` change any of it)."""
    return randomise(WDSR(**{**dict(variant=variant, scale=scale, n_feats=8, n_resblocks=2, block_feats=16),
                             **overrides}))


def float64_forward(state: dict, cfg, image: torch.Tensor) -> torch.Tensor:
    """WDSR written again from the paper's description, in float64, straight from the state_dict."""
    s = {k: v.double() for k, v in state.items()}

    def conv(prefix, x):
        v, g = s[prefix + ".weight_v"], s[prefix + ".weight_g"]
        weight = v * (g.flatten() / v.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
        return F.conv2d(x, weight, s[prefix + ".bias"], padding=weight.shape[-1] // 2)

    mean = torch.tensor(cfg.rgb_mean, dtype=torch.float64, device=image.device).view(1, 3, 1, 1) * cfg.rgb_range
    x = (image.double() - mean) / cfg.pixel_norm_scale
    skip = F.pixel_shuffle(conv("skip.0", x), cfg.scale)
    h = conv("head.0", x)
    for i in range(cfg.n_resblocks):
        p = f"body.{i}.body"
        if cfg.variant == "a":
            r = conv(p + ".2", F.relu(conv(p + ".0", h)))
        else:
            r = conv(p + ".3", conv(p + ".2", F.relu(conv(p + ".0", h))))
        h = h + cfg.res_scale * r
    out = F.pixel_shuffle(conv("tail.0", h), cfg.scale) + skip
    return out * cfg.pixel_norm_scale + mean


def ychfan_state(model: WDSR) -> dict:
    """Our state_dict in the ychfan/wdsr key layout (one `body` Sequential, as in its epoch_30.pth)."""
    n = model.config.n_resblocks
    out = {}
    for key, value in model.state_dict().items():
        key = key.replace("head.0.", "body.0.").replace("tail.0.", f"body.{n + 1}.")
        m = re.match(r"body\.(\d+)\.body\.(.*)", key)
        out[f"body.{int(m.group(1)) + 1}.body.{m.group(2)}" if m else key] = value
    return out


def ychfan_forward(state: dict, image: torch.Tensor, n_blocks: int, scale: int) -> torch.Tensor:
    """The ychfan/wdsr forward, written from its description: [0,1] input, -0.5, body, +skip, shuffle, +0.5."""
    def conv(prefix, x):
        w = torch._weight_norm(state[prefix + ".weight_v"], state[prefix + ".weight_g"], 0)
        return F.conv2d(x, w, state[prefix + ".bias"], padding=w.shape[-1] // 2)

    x = image - 0.5
    h = conv("body.0", x)
    for i in range(1, n_blocks + 1):
        h = h + conv(f"body.{i}.body.2", F.relu(conv(f"body.{i}.body.0", h)))
    return F.pixel_shuffle(conv(f"body.{n_blocks + 1}", h) + conv("skip.0", x), scale) + 0.5


def parametrizations_keys(state: dict) -> dict:
    """A state_dict of ours with the keys torch.nn.utils.parametrizations.weight_norm writes."""
    return {key.replace(".weight_g", ".parametrizations.weight.original0")
               .replace(".weight_v", ".parametrizations.weight.original1"): value for key, value in state.items()}


def photo(height: int, width: int, batch: int = 1) -> torch.Tensor:
    """Crops of scikit-image's astronaut photo, (batch, 3, height, width) float32 in [0, 1]."""
    from skimage import data

    array = data.astronaut()  # (512, 512, 3) uint8
    crops = [array[40 + 37 * i: 40 + 37 * i + height, 150 + 23 * i: 150 + 23 * i + width] for i in range(batch)]
    return torch.stack([torch.from_numpy(c.copy()).permute(2, 0, 1) for c in crops]).float() / 255
