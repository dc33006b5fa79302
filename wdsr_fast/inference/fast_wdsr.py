"""FastWDSR: the drop-in inference module.

A ``FastWDSR`` *is* a ``WDSR`` (same constructor, parameters and ``state_dict``, the authors' layouts
included), so it trains like one: whenever autograd would record the forward (grad mode on, and a parameter or
the input requiring grad: a frozen model still passes gradients to its input), it runs the trainable path of
``WDSR`` (weight norm computed every call). Under ``torch.no_grad()`` / ``torch.inference_mode()`` it folds
weight norm once (refolding when a parameter changes) and runs the four ops of a backend (``wdsr_fast.ops``):
``"cuda"`` (csrc/cuda/), ``"triton"`` or ``"torch"`` (plain PyTorch ops, ``ops/torch_backend.py``).
``backend="auto"`` picks the fastest that can run on the input's device.

``last_backend`` says what ran the last call: a backend name (``"cuda"``, ``"triton"``, ``"torch"``), or
``"autograd"`` when autograd recorded the forward and the trainable path ran.

The folded weights follow the parameters: a change through autograd-visible ops (an optimizer step,
``p.copy_()`` under ``no_grad``, ``load_state_dict``) or a replaced parameter is seen on the next call. A change
made behind autograd's back, through ``p.data`` (``p.data.copy_(...)``, ``p.data.mul_(...)``), leaves no trace
on the parameter, so it is picked up at the next ``eval()``, ``train()``, ``load_state_dict()`` or ``.to()`` /
``.half()`` / ``.cuda()``, or by calling ``refold()``.

    model = FastWDSR.from_reference(reference_model).cuda().eval()
    with torch.inference_mode():
        sr = model(lr.half())          # (N, 3, H, W) in [0, rgb_range] -> (N, 3, sH, sW)
    print(model.last_backend)          # e.g. "cuda"
"""
from __future__ import annotations

import dataclasses
import math
import warnings

import torch

from .. import ops
from ..model import WDSR, check_image
from ..model.fold import FoldedWDSR, fold

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
AUTOGRAD = "autograd"  # last_backend when autograd recorded the forward: WDSR's trainable path ran
UNIT_RANGE = "unit range"  # the [0, 1]-input hint, in FastWDSR._warned once given

# Walking the module tree for its parameters costs ~90 us of host time per forward (WDSR-B 32x16), a tenth of
# the 1 ms per frame this package targets; FastWDSR keeps the list, and rebuilds it after any module anywhere
# registers a parameter (this counter) or after its own _apply (.to(), .half(), ... may replace parameter objects).
# The counting hook is installed when the first FastWDSR is made, not when the package is imported.
_parameter_registrations = 0
_counting_hook = None


def _count_parameter_registration(module, name, param):
    global _parameter_registrations
    _parameter_registrations += 1


def _count_parameter_registrations() -> None:
    global _counting_hook
    if _counting_hook is None:
        _counting_hook = torch.nn.modules.module.register_module_parameter_registration_hook(
            _count_parameter_registration)


class FastWDSR(WDSR):
    """WDSR with fused inference. Extra keyword arguments beyond ``WDSR``'s:

    backend: "auto" (default: the fastest that can run, per call), "cuda", "triton" or "torch".
    cuda_graphs: replay a captured CUDA graph per input shape/dtype (CUDA only); removes the per-op
        host overhead, which dominates at small sizes.
    check_finite: raise ValueError on NaN/inf input, on the fused and the autograd path alike (costs one device
        sync per call; default True). The same sync gives a hint, once per model, when the input looks like pixels
        in [0, 1] given to a model of ``rgb_range`` above 1: its largest value at most 1 and above 0 (an all-black
        image says nothing). ``range_hint = False`` turns the hint off (the ``Upscaler`` does: it scales pixels
        itself); ``check_finite=False`` turns both off and adds no sync.

    ``last_backend``: what ran the last call, a backend name or ``"autograd"`` (the trainable path, taken
    whenever autograd records the forward: grad mode on and a parameter or the input requiring grad, so a frozen
    model passes gradients to its input).

    Weight norm is folded once and cached; the cache follows the parameters (optimizer steps, ``load_state_dict``,
    replaced parameters). Edits through ``p.data`` are invisible to that check: ``eval()``, ``train()``,
    ``load_state_dict()``, ``.to()`` (and ``.half()``, ``.cuda()``...) and ``refold()`` all refold.
    """

    def __init__(self, *args, backend: str = ops.AUTO, cuda_graphs: bool = False, check_finite: bool = True,
                 **kwargs):
        _count_parameter_registrations()  # before the parameters exist: their registration is counted too
        super().__init__(*args, **kwargs)
        if backend != ops.AUTO and backend not in ops.BACKENDS:
            raise ValueError(f"backend must be {ops.AUTO!r} or one of {ops.BACKENDS}, got {backend!r}")
        ops.preload()  # so that forward imports nothing: torch.compile can trace it whole
        self.backend = backend
        self.cuda_graphs = cuda_graphs
        self.check_finite = check_finite
        self.range_hint = True
        self.last_backend: str | None = None
        self._folded: dict[tuple, FoldedWDSR] = {}
        self._folded_key: tuple | None = None
        self._graphs: dict[tuple, _Graph] = {}
        self._warned: set = set()
        self._parameter_list: list = []
        self._parameter_list_at = -1  # _parameter_registrations when _parameter_list was taken

    @classmethod
    def from_reference(cls, model: WDSR, **kwargs) -> FastWDSR:
        """A FastWDSR with ``model``'s config and weights, on its device."""
        fast = cls.from_config(model.config, **kwargs)
        fast.load_state_dict(model.state_dict())
        return fast.to(next(model.parameters()).device)

    @classmethod
    def from_config(cls, config, **kwargs) -> FastWDSR:
        return cls(**dataclasses.asdict(config), **kwargs)

    # -- backend choice -------------------------------------------------------------------------
    def resolve_backend(self, device: torch.device, dtype: torch.dtype | None = None) -> str:
        """The backend a call on ``device`` with ``dtype`` images will use (warning once if the asked-for one cannot
        run)."""
        if self.backend == ops.AUTO:
            return ops.pick_backend(device, self.config, dtype)
        wrong_device = ops.device_reason(self.backend, device)
        if wrong_device is not None:  # an error, not a fallback: the model and input are not where asked
            raise RuntimeError(f"{wrong_device}: move the model and input to such a device, or use "
                               f"backend={ops.AUTO!r}")
        reason = ops.unavailable_reason(self.backend, device, self.config, dtype)
        if reason is None:
            return self.backend
        fallback = ops.pick_backend(device, self.config, dtype)
        if self.backend not in self._warned:
            self._warned.add(self.backend)
            warnings.warn(f"FastWDSR: {reason}; falling back to backend {fallback!r}", stacklevel=3)
        return fallback

    # -- folded weights -------------------------------------------------------------------------
    def refold(self) -> FastWDSR:
        """Forget the folded weights (and CUDA graphs): the next inference call folds the current parameters.
        Needed only after edits through ``p.data``; ``eval()``, ``train()``, ``load_state_dict()`` and ``.to()``
        call it. Returns the model."""
        self._folded.clear()
        self._graphs.clear()
        self._folded_key = None
        return self

    def train(self, mode: bool = True) -> FastWDSR:  # eval() is train(False)
        super().train(mode)
        return self.refold()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.refold()
        return result

    def _current_parameters(self) -> list:
        if self._parameter_list_at != _parameter_registrations:
            self._parameter_list = list(self.parameters())
            self._parameter_list_at = _parameter_registrations
        return self._parameter_list

    def _apply(self, fn, recurse=True):  # .to(), .half(), .cuda(), ...
        self._parameter_list_at = -1
        result = super()._apply(fn, recurse)
        self.refold()
        return result

    def _parameters_key(self) -> tuple:
        # Inference tensors (parameters made under torch.inference_mode) keep no version counter: only a
        # replaced tensor is seen for them.
        return tuple((p.data_ptr(), -1 if p.is_inference() else p._version) for p in self._current_parameters())

    def folded(self, device: torch.device, dtype: torch.dtype) -> FoldedWDSR:
        """Weight norm folded into plain weights, cast to ``dtype`` on ``device``; cached until a
        parameter changes (optimizer step, ``load_state_dict``, ``.to()``), per ``ops.kernel_settings()`` (the TF32
        setting of fp32 convolutions, the Triton block variant). Under torch.compile the folding is
        traced into the graph instead: a few small ops per call, always of the current weights."""
        if torch.compiler.is_compiling():
            return fold(self).to(device=device, dtype=dtype)
        key = self._parameters_key()
        if key != self._folded_key:
            self._folded.clear()
            self._graphs.clear()
            self._folded_key = key
        at = (device, dtype, ops.kernel_settings())  # a new fold (and new graphs) when the settings change
        if at not in self._folded:
            with torch.no_grad():
                self._folded[at] = fold(self).to(device=device, dtype=dtype)
        return self._folded[at]

    # -- forward --------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self._recorded(image):
            self.last_backend = AUTOGRAD
            check_image(image)
            self._check_values(image)
            return super().forward(image)
        self._check_input(image)
        backend = self.resolve_backend(image.device, image.dtype)  # its errors before the values' hint
        self._check_values(image)
        self.last_backend = backend
        if image.shape[0] == 0:  # an empty batch: nothing for the kernels to do
            scale = self.config.scale
            return image.new_empty((0, 3, image.shape[2] * scale, image.shape[3] * scale))
        folded = self.folded(image.device, image.dtype)
        if self.cuda_graphs and image.device.type == "cuda":
            return self._replay(backend, folded, image)
        return run_folded(ops.get_backend(backend), folded, image)

    def _recorded(self, image: torch.Tensor) -> bool:
        """Whether autograd would record a forward of ``image``: grad mode on and the image or any parameter
        requiring grad (a frozen model still passes gradients to its input: perceptual losses, attacks)."""
        return torch.is_grad_enabled() and (
            (isinstance(image, torch.Tensor) and image.requires_grad)
            or any(p.requires_grad for p in self._current_parameters()))

    def _check_input(self, image: torch.Tensor) -> None:
        check_image(image)
        if image.dtype not in FLOAT_DTYPES:
            raise TypeError(f"FastWDSR takes float32, float16 or bfloat16 images, got {image.dtype}")
        weight_device = self.head[0].weight_v.device
        if image.device != weight_device:
            raise RuntimeError(f"input is on {image.device} but the model is on {weight_device}: "
                               f"move one of them (model.to(device) or image.to(device))")

    def _check_values(self, image: torch.Tensor) -> None:
        """With ``check_finite``: ValueError for NaN/inf input, and the [0, 1] hint, from one device sync (the
        smallest and largest value: NaN makes both NaN, an infinity shows in one)."""
        if not self.check_finite or image.numel() == 0:
            return
        low, high = torch.stack(torch.aminmax(image.detach())).tolist()
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("input image contains NaN or infinite values")
        rgb_range = self.config.rgb_range
        if self.range_hint and rgb_range > 1 and 0 < high <= 1 and UNIT_RANGE not in self._warned:
            self._warned.add(UNIT_RANGE)
            warnings.warn(f"FastWDSR: the input's largest value is {high:.3g}, at most 1, but this model takes pixels "
                          f"in [0, {rgb_range:g}] (rgb_range {rgb_range:g}): scale images in [0, 1] by {rgb_range:g} "
                          f"(shown once per model)", stacklevel=5)  # the caller of model(image)

    def _replay(self, backend: str, folded: FoldedWDSR, image: torch.Tensor) -> torch.Tensor:
        # The captured kernels keep the TF32 setting and the Triton block variant of their capture: both in the key.
        key = (backend, tuple(image.shape), image.dtype, image.device, image.is_contiguous(), ops.kernel_settings())
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = _Graph(ops.get_backend(backend), folded, image)
        return graph(image)


def run_folded(backend_ops, folded: FoldedWDSR, image: torch.Tensor) -> torch.Tensor:
    """One forward through a backend's fused ops: head, blocks, tail + skip + shuffle."""
    cfg = folded.config
    norm_scale = cfg.pixel_norm_scale
    image = image.contiguous(memory_format=torch.channels_last)  # features follow it: NHWC convs are faster
    x = backend_ops.head_conv(image, *folded.head, folded.mean, norm_scale)
    block = backend_ops.wdsr_a_block if cfg.variant == "a" else backend_ops.wdsr_b_block
    for weights in folded.blocks:
        x = block(x, *weights, cfg.res_scale)
    return backend_ops.tail_shuffle(x, image, *folded.tail, *folded.skip, folded.mean, norm_scale, cfg.scale)


def static_copy(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` that is an ordinary tensor even when made under ``torch.inference_mode()`` (where a clone
    would be an inference tensor, which a later ``copy_`` outside inference mode refuses)."""
    with torch.inference_mode(False), torch.no_grad():
        return t.clone()


class _Graph:
    """A CUDA graph of ``run_folded`` for one input shape, dtype and layout, on the input's device.

    Its static input is an ordinary tensor and it is captured outside inference mode, so one captured under
    ``torch.inference_mode()`` replays under ``torch.no_grad()`` too, and the other way round."""

    def __init__(self, backend_ops, folded: FoldedWDSR, image: torch.Tensor):
        self.device = image.device
        with torch.cuda.device(self.device), torch.inference_mode(False), torch.no_grad():
            self.static_input = static_copy(image)
            stream = torch.cuda.Stream(device=self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):  # warm-up outside capture (kernel compilation, autotuning)
                for _ in range(2):
                    run_folded(backend_ops, folded, self.static_input)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_output = run_folded(backend_ops, folded, self.static_input)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        with torch.cuda.device(self.device):
            self.static_input.copy_(image)
            self.graph.replay()
            return self.static_output.clone()

