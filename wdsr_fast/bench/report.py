"""The benchmark's output: the environment it ran in, the printed table, and results.json, results.csv and
throughput.png in the results folder."""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

from ..io.atomic import atomic_path, write_text
from .rows import FAST

COLUMNS = ("preset", "scale", "out_w", "out_h", "batch", "dtype", "threads", "row", "ms_per_image", "fps",
           "mpix_per_s", "gflops", "of_peak", "peak_gflops", "roofline", "vs_eager_fp32", "vs_compile",
           "best_peer", "vs_best_peer", "vs_reference_op", "thread_scaling", "rel_err", "first_call_s",
           "peak_mem_mb", "skipped")
PACKAGES = ("numpy", "onnx", "onnxruntime", "openvino", "triton")  # versions recorded beside torch's
# The ISA extensions the CPU rows care about (bf16 and AMX: OpenVINO computes in bf16 by default where they are).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
# Environment variables that change which kernels the CPU rows run, recorded where set.
KERNEL_ENV = ("WDSR_FAST_CPU_ISA", "WDSR_FAST_CPU_BLOCK_A", "WDSR_FAST_CPU_BLOCK_B",
              "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")


def cpu_name() -> str:
    """The CPU's model name as the OS reports it (Linux: /proc/cpuinfo), else platform's answer."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS the CPU has (Linux: /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return [f for f in CPU_FLAGS if f in flags]


def short_cpu_name() -> str:
    """e.g. "intel-xeon-avx512", "amd-epyc-7b13-avx2": the CPU model's words and the ISA torch uses, for folder
    names."""
    text = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*|\d+-core", " ", cpu_name().lower(), flags=re.I)
    words = [w for w in re.split(r"[^a-z0-9]+", text) if w]
    return "-".join(words[:3] + [torch.backends.cpu.get_cpu_capability().lower()])


def versions() -> dict:
    found = {"torch": torch.__version__, "python": platform.python_version(), "cuda": torch.version.cuda}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def environment(device: torch.device) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        commit = None
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
           "cpu": cpu_name(), "cpu_flags": cpu_flags(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "cpu_count": os.cpu_count(), "commit": commit, **versions(),
           "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ}}
    if hasattr(os, "getloadavg"):
        env["load_average_at_start"] = os.getloadavg()
    return env


def format_table(rows: list[dict]) -> str:
    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
        return str(value)

    measured = [r for r in rows if "skipped" not in r]
    shown = [c for c in COLUMNS if c != "skipped" and any(r.get(c) is not None for r in measured)]
    table = [shown] + [[cell(r.get(c)) for c in shown] for r in measured]
    widths = [max(len(row[i]) for row in table) for i in range(len(shown))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) for row in table]
    skipped: dict[str, list[str]] = {}
    for r in rows:
        if "skipped" in r:
            skipped.setdefault(r["skipped"], []).append(r["row"])
    lines += [f"skipped {', '.join(dict.fromkeys(names))}: {reason}" for reason, names in skipped.items()]
    notes = {r["peak_mem_note"] for r in rows if "peak_mem_note" in r}
    lines += [f"peak memory not measured for some rows: {note}" for note in sorted(notes)]
    return "\n".join(lines)


def peer_summary(rows: list[dict]) -> str:
    """A line per plain FastWDSR row (no variant) that has a peer: its time and how it compares with the fastest."""
    def threads(n: int) -> str:
        return f"{n} thread" + ("s" if n > 1 else "")

    return "\n".join(
        f"{r['row']}, {r['preset']} x{r['scale']} {r['out_w']}x{r['out_h']} batch {r['batch']} {r['dtype']}, "
        f"{threads(r['threads'])}: {r['ms_per_image']:.3g} ms, {r['vs_best_peer']:.2f}x the fastest peer, "
        f"{r['best_peer']} ({r['ms_per_image'] * r['vs_best_peer']:.3g} ms)"
        for r in rows if r["kind"] == FAST and not r.get("variant") and "vs_best_peer" in r)


def write_results(rows: list[dict], env: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.json", json.dumps({"environment": env, "rows": rows}, indent=1))
    lines = [",".join(COLUMNS)] + [",".join("" if r.get(c) is None else str(r[c]).replace(",", ";") for c in COLUMNS)
                                   for r in rows]
    write_text(out / "results.csv", "\n".join(lines) + "\n")
    plot(rows, env, out / "throughput.png")


def plot(rows: list[dict], env: dict, path: Path) -> None:
    """Output megapixels per second of each whole-model row, per case and thread count (side by side: the thread
    scaling)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label_of(r):
        return f"{r['preset']} x{r['scale']} {r['out_w']}x{r['out_h']} b{r['batch']}, {r['threads']} thr"

    measured = [r for r in rows if "mpix_per_s" in r and r["op"] is None]
    labels = sorted({label_of(r) for r in measured})
    series = list(dict.fromkeys(f"{r['row']} {r['dtype']}" for r in measured))
    fig, ax = plt.subplots(figsize=(max(7, 0.35 * len(labels) * max(1, len(series))), 4.8))
    width = 0.8 / max(1, len(series))
    for k, name in enumerate(series):
        values = [next((r["mpix_per_s"] for r in measured if f"{r['row']} {r['dtype']}" == name and
                        label_of(r) == label), 0) for label in labels]
        ax.bar([i + k * width for i in range(len(labels))], values, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, rotation=12, fontsize=8)
    ax.set_ylabel("output megapixels / s")
    ax.set_title(f"wdsr_fast on {env['device']} ({env['date'][:10]}, {env['commit']})", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
