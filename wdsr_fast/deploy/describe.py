"""What a model file holds: a checkpoint (any layout ``load_model`` reads) or an ONNX file from ``export_onnx``.

``describe_file(path)`` returns (label, value) rows: architecture, variant, scale, widths, blocks, parameter
count, normalisation, and where it comes from (the source key layout and weight-norm API of a checkpoint; the
inputs, outputs, opset and metadata of an ONNX file). Unreadable files raise ``CheckpointError`` (a ValueError)
with one line naming the file and the reason.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..model import WDSRConfig, count_parameters
from ..model.checkpoint import CheckpointError, load_model, read_checkpoint
from ..model.key_layouts import translate_state_dict

Rows = list[tuple[str, str]]

WEIGHT_NORM_APIS = {
    "legacy": "weight_g / weight_v (torch.nn.utils.weight_norm)",
    "parametrizations": "parametrizations.weight.original0 / original1 (torch.nn.utils.parametrizations.weight_norm)",
    "none": "none: plain conv weights (weight norm folded)",
}


def describe_file(path) -> Rows:
    """Rows describing a checkpoint or (by its .onnx suffix) an ONNX file."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return describe_onnx(path)
    return describe_checkpoint(path)


def weight_norm_api(state: dict[str, torch.Tensor]) -> str:
    """"legacy", "parametrizations" or "none", from a state_dict's keys as stored."""
    if any(".parametrizations.weight.original" in key for key in state):
        return "parametrizations"
    if any(key.endswith(".weight_g") for key in state):
        return "legacy"
    return "none"


def describe_checkpoint(path) -> Rows:
    stored, stored_config = read_checkpoint(path)
    model = load_model(path)  # validates everything and gives the config, stored or inferred
    _, ychfan = translate_state_dict(stored)
    if stored_config is not None:
        layout = "wdsr_fast (head/body/tail/skip keys, config stored in the file)"
    elif ychfan:
        layout = "ychfan/wdsr (body.0 head, body.1..n blocks, body.n+1 tail; config inferred from shapes)"
    else:
        layout = "JiahuiYu/wdsr_ntire2018 (head/body/tail/skip keys; config inferred from shapes)"
    if any(key.startswith("module.") for key in stored):
        layout += ", keys prefixed with 'module.'"
    rows = [("file", str(path)), ("format", f"checkpoint ({Path(path).suffix.lstrip('.') or 'no suffix'})")]
    rows += config_rows(model.config)
    rows += [("parameters", f"{count_parameters(model):,}"),
             ("source layout", layout),
             ("weight norm", WEIGHT_NORM_APIS[weight_norm_api(stored)])]
    return rows


def config_rows(cfg: WDSRConfig) -> Rows:
    rows = [("architecture", f"WDSR-{cfg.variant.upper()}"), ("scale", f"x{cfg.scale}"),
            ("n_feats", str(cfg.n_feats)), ("n_resblocks", str(cfg.n_resblocks))]
    if cfg.variant == "a":
        rows.append(("block_feats", f"{cfg.wide_feats} (wide 3x3)"))
    else:
        rows.append(("wide_feats", f"{cfg.wide_feats} (expansion {cfg.expansion})"))
        rows.append(("low_rank_feats", f"{cfg.low_rank_feats} (low_rank {cfg.low_rank:g})"))
    mean = ", ".join(f"{m:g}" for m in cfg.rgb_mean)
    rows += [("res_scale", f"{cfg.res_scale:g}"),
             ("rgb_range", f"{cfg.rgb_range:g} (input and output pixels in [0, {cfg.rgb_range:g}])"),
             ("normalisation", f"mean ({mean}) x rgb_range, divided by {cfg.pixel_norm_scale:g}")]
    return rows


def describe_onnx(path) -> Rows:
    try:
        import onnx
    except ImportError:
        raise ImportError("reading ONNX files needs onnx: pip install 'wdsr-fast[onnx]'") from None
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors and the like
        raise CheckpointError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    props = {prop.key: prop.value for prop in proto.metadata_props}
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in proto.opset_import)
    producer = f"{proto.producer_name} {proto.producer_version}".strip() or "unknown"
    rows = [("file", str(path)), ("format", f"ONNX (opset {opsets}; produced by {producer})")]
    config_json = props.pop("wdsr_fast.config", None)
    if config_json is not None:
        try:
            rows += config_rows(WDSRConfig.from_dict(json.loads(config_json)))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: its wdsr_fast.config metadata is not a valid WDSR config ({exc})") from None
    else:
        rows.append(("architecture", "unknown (no wdsr_fast.config metadata: not exported by wdsr_fast)"))
    initializers = sum(_numel(t.dims) for t in proto.graph.initializer)
    rows.append(("parameters", f"{initializers:,} (folded weights and biases)"))
    for label, values in (("input", proto.graph.input), ("output", proto.graph.output)):
        for value in values:
            rows.append((label, _value_text(value)))
    rows += [(f"metadata {key}", value) for key, value in props.items()]
    return rows


def _numel(dims) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


def _value_text(value) -> str:
    """e.g. 'lr: float32 [batch, 3, height, width]'."""
    from onnx import TensorProto

    tensor = value.type.tensor_type
    dtype = TensorProto.DataType.Name(tensor.elem_type).lower()
    dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
    dims = [d.dim_param or str(d.dim_value) for d in tensor.shape.dim]
    return f"{value.name}: {dtype} [{', '.join(dims)}]"
