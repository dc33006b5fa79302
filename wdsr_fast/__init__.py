"""wdsr_fast: WDSR-A/WDSR-B super-resolution, a faithful trainable reference and fused fast inference.

    import wdsr_fast
    model = wdsr_fast.load_model("weights.safetensors")          # reference WDSR, ready to run
    fast = wdsr_fast.FastWDSR.from_reference(model).eval()        # fused inference, same outputs
    with torch.inference_mode():
        sr = fast(lr_image)                                       # (N,3,H,W) in [0,255] -> (N,3,sH,sW)
    big = wdsr_fast.Upscaler(scale=2).upscale(pil_image_or_array)  # whole images: any mode, 8/16 bits, tiled
"""
from .checkpoint import load_model, save_model
from .fast import FastWDSR
from .fold import FoldedWDSR, fold, folded_copy
from .model import PRESETS, WDSR, WDSRConfig, count_parameters, preset
from .upscaler import Upscaler

__all__ = ["WDSR", "WDSRConfig", "FastWDSR", "PRESETS", "preset", "count_parameters", "fold", "folded_copy",
           "FoldedWDSR", "load_model", "save_model", "Upscaler"]
__version__ = "0.1.0"
