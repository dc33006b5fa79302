"""The networks: ``WDSRConfig`` and the presets, the trainable reference ``WDSR`` (weight norm), weight norm
folded into plain convs (``fold``), the checkpoint key layouts of the authors' releases and the checkpoint files."""
from .checkpoint import CheckpointError, load_model, save_model
from .config import SCALES, VARIANTS, WDSRConfig
from .fold import FoldedWDSR, fold, folded_copy
from .network import WDSR, check_image, count_parameters
from .presets import PRESETS, preset

__all__ = ["SCALES", "VARIANTS", "WDSRConfig", "WDSR", "check_image", "count_parameters", "PRESETS", "preset",
           "FoldedWDSR", "fold", "folded_copy", "CheckpointError", "load_model", "save_model"]
