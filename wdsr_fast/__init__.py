"""wdsr_fast: WDSR-A/WDSR-B super-resolution, a faithful trainable reference and fused fast inference.

    import wdsr_fast
    model = wdsr_fast.load_model("weights.safetensors")          # reference WDSR, ready to run
    fast = wdsr_fast.FastWDSR.from_reference(model).eval()        # fused inference, same outputs
    with torch.inference_mode():
        sr = fast(lr_image)                                       # (N,3,H,W) in [0,255] -> (N,3,sH,sW)
    big = wdsr_fast.Upscaler(scale=2).upscale(pil_image_or_array)  # whole images: any mode, 8/16 bits, tiled

The package in layers, each importing only from the layers below it (tests/test_imports.py checks there are no
import loops):
1. data and small libraries: ``model.WDSRConfig`` and the presets, ``key_layouts`` (checkpoint key layouts),
   ``atomic`` (file writes), ``timing``, ``metrics``;
2. networks: ``model`` (the trainable reference WDSR), ``fold`` (weight norm folded into plain weights),
   ``checkpoint`` (files);
3. ops: ``ops/reference.py`` (the op contract) and the backends that implement it, picked by the registry of
   ``ops/__init__.py``;
4. ``fast.FastWDSR``, the drop-in that runs a backend's ops;
5. the commands (upscale, train, eval, demo, bench), gathered by ``cli``.
"""
from .checkpoint import load_model, save_model
from .export import export_onnx
from .fast import FastWDSR
from .fold import FoldedWDSR, fold, folded_copy
from .model import PRESETS, WDSR, WDSRConfig, count_parameters, preset
from .upscaler import Upscaler

__version__ = "0.1.0"  # the package's one version string (pyproject.toml reads it)
__all__ = ["WDSR", "WDSRConfig", "FastWDSR", "PRESETS", "preset", "count_parameters", "fold", "folded_copy",
           "FoldedWDSR", "load_model", "save_model", "export_onnx", "Upscaler"]
