"""Inference: ``FastWDSR`` (the drop-in that runs a backend's fused ops), ``Upscaler`` (whole images: tiling, alpha,
bit depth) and the batch over image files behind ``wdsr-fast upscale``."""
