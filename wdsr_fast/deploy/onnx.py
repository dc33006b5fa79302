"""ONNX export of a WDSR model, checked in ONNX Runtime before it replaces anything.

``export_onnx(model, path)`` writes the folded network: weight norm folded into plain ``Conv`` weights, the
pixel shuffle as ``DepthToSpace`` (CRD), the normalisation and de-normalisation as ``Sub``/``Div``/``Mul``/``Add``
around them; nothing else, no custom ops. The graph (exported with PyTorch's TorchScript-based ONNX exporter,
``torch.onnx.export(..., dynamo=False)``, which needs no extra package and works offline):

    input  "lr": (batch, 3, height, width), RGB, NCHW, values in [0, rgb_range]; float32 (float16 with half=True)
    output "sr": (batch, 3, scale*height, scale*width), RGB, NCHW, same range and dtype, not clamped

Batch, height and width are dynamic unless ``static=(height, width)`` fixes the two sizes (batch stays dynamic).
The model's config (variant, scale, widths, blocks, rgb_range, rgb_mean, norm_scale) is in the file's
``metadata_props``: ``wdsr_fast.config`` holds it as JSON, and a few keys (architecture, scale, rgb_range,
input, output) spell it out.

The file is written to a temporary path beside the target and checked there: ``onnx.checker``, then ONNX Runtime
(CPU) against the reference WDSR computed in float64, at batch 2 and two sizes that differ from the traced one
(for a static file: at its size, batches 1 and 2). Relative error (max |ort - ref| / max |ref|) must be below
1e-4 in float32 and 5e-3 in float16 (the reference then takes the same fp16-rounded input, with unrounded
weights). Only a file that passes replaces the target (or, with ``replace=False``, takes a name that is free); a failure
raises ``ExportError`` saying what differed, naming the target (never the temporary file), and leaves whatever was
at the target as it was.
"""
from __future__ import annotations

import importlib.metadata
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..io.atomic import atomic_path
from ..model import WDSR
from ..model.fold import folded_copy

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
DEFAULT_OPSET = 17
MIN_OPSET = 11  # DepthToSpace with mode CRD (what the pixel shuffle becomes)
MAX_OPSET = 20  # the highest the TorchScript-based exporter supports (torch 2.13 and 2.14)
TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3}
TRACE_SIZE = (24, 32)  # height, width of the example input the exporter traces; never a checked size
CHECK_SIZES = ((19, 27), (33, 14))  # height, width of the dynamic checks (odd, non-square, both orientations)
CHECK_BATCH = 2
CONFIG_METADATA_KEY = "wdsr_fast.config"


class ExportError(RuntimeError):
    """An export that could not be written or did not pass its checks; the message says why."""


def export_onnx(model: WDSR, path, *, static: tuple[int, int] | None = None, opset: int = DEFAULT_OPSET,
                half: bool = False, replace: bool = True) -> Path:
    """Write ``model`` (a ``WDSR`` or ``FastWDSR``) as an ONNX file at ``path``, checked in ONNX Runtime.

    static: (height, width) of a fixed-size file; None (default) leaves batch, height and width dynamic.
    opset: ONNX opset (default 17; from 11 to 20).
    half: float16 weights, input and output (for GPU runtimes; the checks run on CPU all the same).
    replace: replace a file already at ``path`` (default); False keeps it and raises ``ExportError``.
    Returns the path. Raises ``ExportError`` (nothing replaced) if the export or its checks fail or ``path``
    cannot be written, and ``ImportError`` naming the ``[onnx]`` extra if onnx or onnxruntime is missing. Messages
    name ``path``, never the temporary file the export is checked in.
    """
    onnx, ort = _import_onnx()
    path = Path(path)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be from {MIN_OPSET} (DepthToSpace in CRD mode) to {MAX_OPSET} (the exporter's "
                         f"newest), got {opset}")
    if static is not None and (len(static) != 2 or min(static) < 1):
        raise ValueError(f"static must be (height, width) in positive pixels, got {static!r}")
    if not replace and path.exists():
        raise ExportError(f"{path} exists; nothing was written (replace=True replaces it)")
    dtype = torch.float16 if half else torch.float32
    reference = _plain_copy(model)  # a CPU WDSR with model's weights, unaffected by later changes to model
    network = folded_copy(reference).to(dtype).eval()
    trace_size = static or TRACE_SIZE
    generator = torch.Generator().manual_seed(0)  # the caller's random state stays as it was
    example = (torch.rand(1, 3, *trace_size, generator=generator) * reference.config.rgb_range).to(dtype)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if static is None:
        dynamic_axes[INPUT_NAME].update({2: "height", 3: "width"})
        dynamic_axes[OUTPUT_NAME].update({2: "out_height", 3: "out_width"})
    tmp = ""
    try:
        with atomic_path(path, replace=replace) as tmp:
            try:
                with warnings.catch_warnings(), torch.no_grad():
                    # The TorchScript exporter warns that it is the legacy one, and the tracer that the input checks
                    # of WDSR.forward become constants: both expected (shapes are checked by the runtime instead).
                    warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
                    warnings.simplefilter("ignore", category=DeprecationWarning)
                    torch.onnx.export(network, (example,), tmp, dynamo=False, opset_version=opset,
                                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes,
                                      do_constant_folding=True)
            except Exception as exc:  # the exporter raises many kinds of errors (unsupported opset, ...)
                reason = next((line for line in str(exc).splitlines() if line.strip()), "")
                raise ExportError(f"{path}: the ONNX export failed ({type(exc).__name__}: {reason}); "
                                  f"nothing was replaced") from None
            proto = onnx.load(tmp)
            _describe_graph(proto, reference, dtype)
            onnx.save(proto, tmp)
            try:
                onnx.checker.check_model(tmp, full_check=True)
            except Exception as exc:
                raise ExportError(f"{path}: the exported graph fails onnx.checker ({exc}); "
                                  f"nothing was replaced") from None
            problem = _check_in_runtime(ort, tmp, reference, dtype, static)
            if problem:
                raise ExportError(f"{path}: {problem}; nothing was replaced")
    except ExportError as exc:  # the exporter, checker and runtime name the file they were given: name the target
        raise ExportError(str(exc).replace(tmp, str(path)) if tmp else str(exc)) from None
    except OSError as exc:  # the target is a folder, its folder cannot be written, ...
        if exc.errno is None:  # atomic_path's own: a file appeared at the target meanwhile (its message names it)
            raise ExportError(str(exc)) from None
        raise ExportError(f"{path}: cannot be written ({exc.strerror}); nothing was replaced") from None
    return path


def metadata(proto) -> dict[str, str]:
    """The ``metadata_props`` of a loaded ONNX model as a dict."""
    return {prop.key: prop.value for prop in proto.metadata_props}


def _import_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ImportError(f"ONNX export needs onnx and onnxruntime ({exc.name} is missing): "
                          f"pip install 'wdsr-fast[onnx]'") from None
    return onnx, onnxruntime


def _plain_copy(model: WDSR) -> WDSR:
    if not isinstance(model, WDSR):
        raise TypeError(f"export_onnx takes a WDSR or FastWDSR model, got {type(model).__name__}")
    copy = WDSR.from_config(model.config)
    copy.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    return copy.eval()


def _describe_graph(proto, reference: WDSR, dtype: torch.dtype) -> None:
    """Config and I/O conventions into the model's metadata and doc strings."""
    cfg = reference.config
    dtype_name = "float16" if dtype == torch.float16 else "float32"
    value_range = f"[0, {cfg.rgb_range:g}]"
    io_text = {
        INPUT_NAME: f"low-resolution image: RGB, NCHW (batch, 3, height, width), {dtype_name}, values in {value_range}",
        OUTPUT_NAME: f"super-resolved image: RGB, NCHW (batch, 3, {cfg.scale}*height, {cfg.scale}*width), "
                     f"{dtype_name}, values in {value_range} (not clamped)",
    }
    for value in (*proto.graph.input, *proto.graph.output):
        if value.name in io_text:
            value.doc_string = io_text[value.name]
    proto.doc_string = (f"WDSR-{cfg.variant.upper()} x{cfg.scale} ({cfg.n_feats} features, {cfg.n_resblocks} blocks), "
                        f"exported by wdsr_fast {_version()}")
    entries = {
        CONFIG_METADATA_KEY: json.dumps(cfg.to_dict()),
        "wdsr_fast.version": _version(),
        "architecture": f"WDSR-{cfg.variant.upper()}",
        "scale": str(cfg.scale),
        "rgb_range": f"{cfg.rgb_range:g}",
        "precision": dtype_name,
        "input": f"{INPUT_NAME}: {io_text[INPUT_NAME]}",
        "output": f"{OUTPUT_NAME}: {io_text[OUTPUT_NAME]}",
    }
    del proto.metadata_props[:]
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value


def _version() -> str:
    try:
        return importlib.metadata.version("wdsr-fast")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _check_in_runtime(ort, path: str, reference: WDSR, dtype: torch.dtype, static: tuple[int, int] | None) -> str:
    """"" if ONNX Runtime's output matches the float64 reference at the check shapes, else what differed."""
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return f"ONNX Runtime cannot load the exported file ({exc})"
    shapes = [(1, *static), (CHECK_BATCH, *static)] if static else [(CHECK_BATCH, *s) for s in CHECK_SIZES]
    reference64 = WDSR.from_config(reference.config).double().eval()
    reference64.load_state_dict(reference.state_dict())
    generator = torch.Generator().manual_seed(0)
    for batch, height, width in shapes:
        image = (torch.rand(batch, 3, height, width, generator=generator) * reference.config.rgb_range).to(dtype)
        try:
            (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()})
        except Exception as exc:
            return f"ONNX Runtime fails on a {batch}x3x{height}x{width} input ({exc})"
        with torch.no_grad():
            expected = reference64(image.double())
        where = f"on a {batch}x3x{height}x{width} {str(image.dtype).removeprefix('torch.')} input"
        if out.shape != tuple(expected.shape) or out.dtype != image.numpy().dtype:
            return (f"ONNX Runtime returns {out.dtype} {list(out.shape)} {where}, expected {image.numpy().dtype} "
                    f"{list(expected.shape)}")
        error = _relative_error(out, expected)
        if not error < TOLERANCE[dtype]:
            return (f"ONNX Runtime's output differs from the reference {where}: relative error {error:.2e} "
                    f"(tolerance {TOLERANCE[dtype]:.0e})")
    return ""


def _relative_error(out: np.ndarray, expected: torch.Tensor) -> float:
    """max |out - expected| / max |expected|; NaN anywhere makes it NaN (and fails the check)."""
    difference = (torch.from_numpy(out).double() - expected).abs()
    return (difference.max() / expected.abs().max()).item()
