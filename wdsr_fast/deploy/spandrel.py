"""WDSR in spandrel (the model loader of chaiNNer, ComfyUI, InvokeAI and others).

    import spandrel
    import wdsr_fast.deploy.spandrel

    wdsr_fast.deploy.spandrel.install()                  # adds the "WDSR" architecture to spandrel.MAIN_REGISTRY
    model = spandrel.ModelLoader().load_from_file("2x_WDSR-B_32x16.safetensors")
    sr = model(lr)                                # (1, 3, H, W) RGB in [0, 1] -> (1, 3, 2H, 2W) in [0, 1]

Detection works on the state_dict alone, for every layout ``wdsr_fast.load_model`` reads: ours and JiahuiYu's
(``head/body/tail/skip``), ychfan's (``body.0`` head ... ``body.n+1`` tail, ``skip.0``), with either weight-norm
API or plain conv weights, under the wrappers and prefixes spandrel removes (``params_ema``, ``state_dict``,
``module.``, ...) and per-key ``module.`` prefixes. A state_dict is claimed only when its keys and every tensor
shape are exactly those of a WDSR-A or WDSR-B network (3x3 RGB head, blocks, tail, 5x5 RGB skip, scale 2, 3 or 4).
The hyperparameters are inferred from the shapes as ``load_model`` infers them.

The descriptor's model is a ``FastWDSR`` whose normalisation is restated for pixels in [0, 1] (rgb_range 1, the
same mean fractions, norm_scale divided by the original rgb_range): the same function as the original model on
[0, 255] pixels, divided by 255, with no extra operation. Under spandrel's call (``torch.inference_mode``) it runs
the fused backends (CUDA, Triton or the plain folded ops on CPU); with gradients on it runs the trainable
reference. fp16 and bf16 are supported; there is no size requirement; tiling is ``ModelTiling.SUPPORTED`` (in
spandrel a recommendation to users who tile: WDSR is convolutional, and tiles overlapping by
``config.receptive_radius`` LR pixels give exactly the untiled output).

spandrel receives the tensors only, not a file's metadata: the normalisation is the one the key layout implies
(the DIV2K mean and rgb_range 255 for ours and JiahuiYu's, [0, 1] input with mean 0.5 for ychfan's). A model trained
with another ``rgb_mean`` or ``norm_scale`` keeps it only through ``wdsr_fast.load_model``, which reads the config
stored in our files.
"""
from __future__ import annotations

import dataclasses

import torch

from ..inference.fast_wdsr import FastWDSR
from ..model import WDSR, WDSRConfig
from ..model.checkpoint import describe_mismatch, infer_config
from ..model.key_layouts import translate_state_dict

try:
    from spandrel import MAIN_REGISTRY, Architecture, ArchSupport, ImageModelDescriptor, ModelTiling
except ImportError as exc:  # an optional dependency
    raise ImportError(f"wdsr_fast.deploy.spandrel needs spandrel ({exc}): pip install 'wdsr-fast[spandrel]'") from None

ARCH_ID = "WDSR"
SKIP_KEY_ENDINGS = ("skip.0.weight_v", "skip.0.parametrizations.weight.original1", "skip.0.weight")


def detect(state_dict) -> bool:
    """True if ``state_dict`` (keys as spandrel passes them) is a WDSR network in a layout wdsr_fast reads."""
    if not any(key.endswith(SKIP_KEY_ENDINGS) for key in state_dict):  # cheap rejection of other architectures
        return False
    if not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        return False
    try:
        state, ychfan = translate_state_dict(dict(state_dict))
        config = infer_config(state, ychfan)
    except (ValueError, KeyError, IndexError, RuntimeError):
        return False
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        expected = WDSR.from_config(config).state_dict()
    return describe_mismatch(expected, state) == ""


def unit_range_config(config: WDSRConfig) -> WDSRConfig:
    """The same network for pixels in [0, 1]: rgb_range 1, norm_scale scaled by 1 / rgb_range."""
    return dataclasses.replace(config, rgb_range=1.0, norm_scale=config.pixel_norm_scale / config.rgb_range)


class WDSRArch(Architecture[FastWDSR]):
    """spandrel's description of WDSR: detection from keys, and loading into a FastWDSR."""

    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name="WDSR", detect=detect)

    def load(self, state_dict) -> ImageModelDescriptor[FastWDSR]:
        state, ychfan = translate_state_dict(dict(state_dict))
        config = infer_config(state, ychfan)
        model = FastWDSR.from_config(unit_range_config(config))
        tags = [f"WDSR-{config.variant.upper()}", f"{config.n_feats}nf", f"{config.n_resblocks}nb",
                f"{config.wide_feats}wide"]
        if ychfan:
            tags.append("ychfan")
        return ImageModelDescriptor(
            model,
            state,  # FastWDSR.load_state_dict also takes the untranslated layouts; ours is the plainest
            architecture=self,
            purpose="SR",
            tags=tags,
            supports_half=True,
            supports_bfloat16=True,
            scale=config.scale,
            input_channels=3,
            output_channels=3,
            tiling=ModelTiling.SUPPORTED,
        )


def install() -> bool:
    """Add WDSR to ``spandrel.MAIN_REGISTRY``; True if it was added, False if it was already there."""
    return bool(MAIN_REGISTRY.add(ArchSupport.from_architecture(WDSRArch()), ignore_duplicates=True))
