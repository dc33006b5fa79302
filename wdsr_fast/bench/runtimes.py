"""The CPU inference runtimes the benchmark races WDSR against, fed the folded model exported to ONNX.

``onnx_model(reference, folder)`` writes the ONNX file once (``wdsr_fast.deploy.onnx.export_onnx``: the folded
network, dynamic shapes, checked in ONNX Runtime against the float64 reference). ``onnxruntime_runner`` and
``openvino_runner`` turn it into a ``RuntimeCall`` over one fixed input, with a given number of threads, that also
says what precision the runtime computes in; each raises ``RuntimeError`` saying what to install when its runtime
is missing.

- ONNX Runtime: CPU execution provider, all graph optimisations, ``threads`` intra-op threads, sequential, idle
  threads not spinning (``session.intra_op.allow_spinning=0``). With spinning on, its idle worker kept a core busy
  for over 50 ms after each call: in the benchmark's interleaved rounds the next row's forward ran up to 3x slower
  (measured with 2 threads on 2 cores), while ONNX Runtime itself gained about 1 ms a call.
- OpenVINO: the CPU device, latency hint, ``threads`` inference threads, the input shape fixed before compiling
  (as its users do for a known size), and fp32 inference precision asked for explicitly: on CPUs with native bf16
  (AVX512-BF16, AMX) OpenVINO otherwise computes in bf16.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..deploy.onnx import INPUT_NAME, export_onnx
from ..model import WDSR

ONNX_FILE = "model.onnx"
INSTALL_HINT = "pip install 'wdsr-fast[bench]'"
# OpenVINO's element types as the benchmark's dtype names.
OPENVINO_PRECISIONS = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


@dataclasses.dataclass(frozen=True)
class RuntimeCall:
    """A runtime's inference on its fixed input; ``precision``: what it computes in, as the runtime reports it
    (a key of ``rows.DTYPES``)."""

    run: Callable[[], np.ndarray]
    precision: str

    def __call__(self) -> np.ndarray:
        return self.run()


def onnx_model(reference: WDSR, folder: Path) -> Path:
    """The folded ``reference`` as an ONNX file in ``folder`` (written on the first call, then reused)."""
    path = folder / ONNX_FILE
    if not path.exists():
        try:
            export_onnx(reference, path)
        except ImportError as exc:
            raise RuntimeError(f"{exc} (or {INSTALL_HINT})") from None
    return path


def onnxruntime_runner(path: Path, image: np.ndarray, threads: int) -> RuntimeCall:
    """A call of ONNX Runtime (CPU provider) on ``image`` (N, 3, H, W) float32."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeError(f"onnxruntime is not installed: {INSTALL_HINT}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: np.ascontiguousarray(image)}
    return RuntimeCall(lambda: session.run(None, feed)[0], "fp32")


def openvino_runner(path: Path, image: np.ndarray, threads: int, fp32: bool = True) -> RuntimeCall:
    """A call of OpenVINO (CPU device, latency hint) on ``image`` (N, 3, H, W) float32: computing in fp32, or with
    ``fp32=False`` at the runtime's default inference precision (bf16 on CPUs with AVX512-BF16 or AMX)."""
    try:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints
    except ImportError:
        raise RuntimeError(f"openvino is not installed: {INSTALL_HINT}") from None
    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape(list(image.shape))
    config = {hints.performance_mode: hints.PerformanceMode.LATENCY, props.inference_num_threads: threads}
    if fp32:
        config[hints.inference_precision] = ov.Type.f32
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    feed = {0: np.ascontiguousarray(image)}

    def run() -> np.ndarray:
        request.infer(feed, share_inputs=True)
        return request.get_output_tensor(0).data
    precision = compiled.get_property(hints.inference_precision).get_type_name()
    return RuntimeCall(run, OPENVINO_PRECISIONS.get(precision, precision))

