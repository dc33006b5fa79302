"""Peak memory of one forward on CPU, measured the same way for every row: torch, TorchScript, ONNX Runtime and
OpenVINO allocate through different allocators, so it is read from the kernel, not from any one of them.

Each row is measured in a fresh Python process (``main`` here, the row named on stdin), so
that nothing an earlier row allocated or cached is reused: the case's reference model and input are made, the
libraries any row may load are loaded and the reference runs once, then (after ``malloc_trim``) the resident set
size is read (the baseline); the row is built and called twice (warm-up,
compilation), freed memory is handed back to the OS again, the peak resident size (VmHWM) is reset through
``/proc/self/clear_refs`` and one more forward runs. The result is that forward's VmHWM minus the baseline: what
the path keeps between calls (its weights, caches, a runtime's arena) plus what the forward allocates, the output
included and the input not. Linux only (VmHWM and its reset); elsewhere the rows say so.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import gc
import importlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .. import ops
from .rows import Case, RowOptions, Setup, rows_of

METHOD = ("peak resident set size (Linux VmHWM, reset before the forward) of one warmed-up forward, minus the "
          "resident size before the row was built (libraries loaded, input made); a fresh process per row; the output "
          "counted, the input not")
TIMEOUT_S = 1800


def peak_memory_cpu(case: Case, options: RowOptions, threads: int, label: str) -> int:
    """Bytes: the peak memory of one forward of row ``label`` of ``case`` (module docstring), in a fresh process."""
    spec = {"case": dataclasses.asdict(case), "threads": threads, "label": label,
            "options": dataclasses.asdict(options)}
    done = subprocess.run([sys.executable, "-c", f"from {__name__} import main; main()"], input=json.dumps(spec),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        lines = (done.stderr.strip() or f"exit status {done.returncode}").splitlines()
        raise RuntimeError(f"the memory run failed: {lines[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["bytes"]


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (peak memory is measured on Linux only)")


def _hand_back_freed_memory() -> None:
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except AttributeError:  # a C library without malloc_trim (not glibc)
            pass


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)
    except OSError as exc:
        raise RuntimeError(f"cannot reset the peak resident size ({exc}): peak memory is measured on Linux only") \
            from None


def _load_libraries(setup: Setup) -> None:
    """What any row may load once per process, loaded before the baseline: the backends, torch.compile's and the
    runtimes' modules, oneDNN's state (a forward of the reference)."""
    ops.preload()
    for module in ("torch._inductor.compile_fx", "onnxruntime", "openvino"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    setup.reference(setup.lr)


def _measure(spec: dict) -> int:
    torch.set_num_threads(spec["threads"])
    options = RowOptions(**{**spec["options"], "backends": tuple(spec["options"]["backends"])})
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        setup = dataclasses.replace(Setup.of(Case(**spec["case"]), torch.device("cpu"), options, Path(folder)),
                                    threads=spec["threads"])
        row = next(r for r in rows_of(setup) if r.label == spec["label"])
        _load_libraries(setup)
        _hand_back_freed_memory()
        baseline_kb = _status_kb("VmRSS")
        call = row.make()
        call()
        call()
        _hand_back_freed_memory()
        _reset_peak()
        out = call()
        peak_kb = _status_kb("VmHWM")
        del out
    return 1024 * (peak_kb - baseline_kb)


def main() -> None:
    """The fresh process's side: the spec on stdin, {"bytes": peak} on stdout."""
    print(json.dumps({"bytes": _measure(json.loads(sys.stdin.read()))}))
