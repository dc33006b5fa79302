"""The benchmark's output: the environment it ran in, the printed table, and results.json, results.csv and
throughput.png in the results folder."""
from __future__ import annotations

import datetime
import json
import platform
import subprocess
from pathlib import Path

import torch

from ..atomic import atomic_path, write_text

COLUMNS = ("preset", "scale", "out_w", "out_h", "batch", "dtype", "row", "ms_per_image", "mpix_per_s", "tflops",
           "gbps", "roofline", "vs_eager_fp32", "vs_compile", "vs_reference_op", "peak_mem_mb", "skipped")


def environment(device: torch.device) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        commit = None
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "triton": triton_version, "cuda": torch.version.cuda,
            "python": platform.python_version(), "commit": commit}


def format_table(rows: list[dict]) -> str:
    def cell(value):
        if value is None:
            return "-"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    measured = [r for r in rows if "skipped" not in r]
    shown = [c for c in COLUMNS if c != "skipped" and any(r.get(c) is not None for r in measured)]
    table = [shown] + [[cell(r.get(c)) for c in shown] for r in measured]
    widths = [max(len(row[i]) for row in table) for i in range(len(shown))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) for row in table]
    skipped = {}
    for r in rows:
        if "skipped" in r:
            skipped.setdefault(r["skipped"], []).append(r["row"])
    lines += [f"skipped {', '.join(dict.fromkeys(names))}: {reason}" for reason, names in skipped.items()]
    return "\n".join(lines)


def write_results(rows: list[dict], env: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.json", json.dumps({"environment": env, "rows": rows}, indent=1))
    lines = [",".join(COLUMNS)] + [",".join("" if r.get(c) is None else str(r[c]).replace(",", ";") for c in COLUMNS)
                                   for r in rows]
    write_text(out / "results.csv", "\n".join(lines) + "\n")
    plot(rows, env, out / "throughput.png")


def plot(rows: list[dict], env: dict, path: Path) -> None:
    """Output megapixels per second of each whole-model row, per output size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if "mpix_per_s" in r and r["op"] is None]
    labels = sorted({f"{r['preset']} x{r['scale']} {r['out_w']}x{r['out_h']} b{r['batch']}" for r in measured})
    series = sorted({f"{r['row']} {r['dtype']}" for r in measured})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) * max(1, len(series)) / 3), 4.5))
    width = 0.8 / max(1, len(series))
    for k, name in enumerate(series):
        values = [next((r["mpix_per_s"] for r in measured if f"{r['row']} {r['dtype']}" == name and
                        f"{r['preset']} x{r['scale']} {r['out_w']}x{r['out_h']} b{r['batch']}" == label), 0)
                  for label in labels]
        ax.bar([i + k * width for i in range(len(labels))], values, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, rotation=15, fontsize=8)
    ax.set_ylabel("output megapixels / s")
    ax.set_title(f"wdsr_fast on {env['device']} ({env['date'][:10]}, {env['commit']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
