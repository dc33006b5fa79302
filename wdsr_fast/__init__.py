"""wdsr_fast: WDSR-A/WDSR-B super-resolution, a faithful trainable reference and fused fast inference.

    import wdsr_fast
    model = wdsr_fast.load_model("weights.safetensors")          # reference WDSR, ready to run
    fast = wdsr_fast.FastWDSR.from_reference(model).eval()        # fused inference, same outputs
    with torch.inference_mode():
        sr = fast(lr_image)                                       # (N,3,H,W) in [0,255] -> (N,3,sH,sW)
    big = wdsr_fast.Upscaler(scale=2).upscale(pil_image_or_array)  # whole images: any mode, 8/16 bits, tiled
    wdsr_fast.upscale_video("clip.mp4", "clip_x2.mp4", scale=2)   # a video: sound, timing and colour kept

The package in layers, each importing only from its own layer and those below it (tests/test_imports.py holds
this, and that there are no import loops):
0. ``io`` (image and video files, atomic writes) and ``weights`` (the bundled weights);
1. ``model``: the config and presets, the trainable reference ``WDSR``, weight-norm folding, checkpoint files
   and the authors' key layouts;
2. ``ops``: ``ops/reference.py`` (the op contract) and the backends that implement it, picked by a registry;
3. ``inference``: ``FastWDSR`` (the drop-in that runs a backend's ops), ``Upscaler`` (whole images), the batch over
   image files, the video pipeline;
4. ``train`` (the loop, its options and files, data, metrics, evaluation) and ``deploy`` (ONNX, model-file
   description, spandrel);
5. ``bench``: side-by-side throughput;
6. ``cli``: one thin module per ``wdsr-fast`` command: parse, call the library, print.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .deploy.onnx import export_onnx
    from .inference.fast_wdsr import FastWDSR
    from .inference.upscaler import Upscaler
    from .inference.video import upscale_video
    from .model import PRESETS, WDSR, WDSRConfig, count_parameters, preset
    from .model.checkpoint import load_model, save_model
    from .model.fold import FoldedWDSR, fold, folded_copy

__version__ = "0.1.0"  # the package's one version string (pyproject.toml reads it)
__all__ = ["WDSR", "WDSRConfig", "FastWDSR", "PRESETS", "preset", "count_parameters", "fold", "folded_copy",
           "FoldedWDSR", "load_model", "save_model", "export_onnx", "Upscaler", "upscale_video"]

# The module of each public name, imported when the name is first used (PEP 562): importing the package costs no
# torch import, so that the ``wdsr-fast`` command makes it inside its own ``main``, where Ctrl-C while torch loads
# is "interrupted" rather than a traceback. A new public name goes here, in __all__ and in the block above.
_HOMES = {"export_onnx": ".deploy.onnx", "FastWDSR": ".inference.fast_wdsr", "Upscaler": ".inference.upscaler",
          "upscale_video": ".inference.video",
          "PRESETS": ".model", "WDSR": ".model", "WDSRConfig": ".model", "count_parameters": ".model",
          "preset": ".model", "load_model": ".model.checkpoint", "save_model": ".model.checkpoint",
          "FoldedWDSR": ".model.fold", "fold": ".model.fold", "folded_copy": ".model.fold"}
_SUBPACKAGES = ("io", "model", "ops", "inference", "train", "deploy", "bench", "cli", "weights")


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
