"""Side-by-side throughput: ``wdsr-fast bench`` and ``benchmarks/run.py``.

Every row is measured in the same process on the same inputs:
- ``reference``: the trainable WDSR (weight norm computed every call), eager, NCHW or channels_last;
- ``compile`` / ``compile-max``: the folded reference under ``torch.compile`` (default / max-autotune),
  channels_last (on GPU; on CPU only with ``--compile-on-cpu``; ``--compile`` chooses which, or none);
- ``fast-<backend>``: FastWDSR on each available backend, and ``+graphs`` with CUDA-graph replay (GPU);
- ``op:wdsr_b_block`` and ``op:tail_shuffle``: one op of one backend against the same op of the reference.

Timing: on GPU ``triton.testing.do_bench`` medians (CUDA events) after warm-up; on CPU wall-clock medians after
one warm-up call. Work is counted from the architecture, 2 FLOPs per multiply-add, convs only; the minimum
bytes are what a fully fused pipeline must move (each op reads its inputs and writes its output once, weights
ignored). The roofline is max(FLOPs / peak FLOP/s, bytes / peak bandwidth), with both peaks measured in the
same run (a large matmul in the row's dtype, a large copy); ``roofline`` is that time over the measured time.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .atomic import atomic_path, write_text
from .model import PRESETS, WDSRConfig

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# -- work counts ----------------------------------------------------------------------------------------

def macs_per_pixel(cfg: WDSRConfig) -> dict[str, int]:
    """Multiply-adds per LR pixel of each op (convs only)."""
    c, out = cfg.n_feats, cfg.out_feats
    if cfg.variant == "a":
        block = 2 * 9 * c * cfg.wide_feats
    else:
        block = c * cfg.wide_feats + cfg.wide_feats * cfg.low_rank_feats + 9 * cfg.low_rank_feats * c
    return {"head_conv": 27 * c, "block": block, "blocks": block * cfg.n_resblocks,
            "tail_shuffle": 9 * c * out + 75 * out}


def min_bytes_per_pixel(cfg: WDSRConfig, element_size: int) -> dict[str, int]:
    """Bytes per LR pixel each fused op must read and write (weights ignored)."""
    c, out = cfg.n_feats, cfg.out_feats
    block = 2 * c * element_size
    return {"head_conv": (3 + c) * element_size, "block": block, "blocks": block * cfg.n_resblocks,
            "tail_shuffle": (c + 3 + out) * element_size}


def model_work(cfg: WDSRConfig, lr_pixels: int, element_size: int) -> tuple[float, float]:
    """(FLOPs, minimum bytes) of one whole forward over ``lr_pixels`` LR pixels."""
    macs, nbytes = macs_per_pixel(cfg), min_bytes_per_pixel(cfg, element_size)
    ops = ("head_conv", "blocks", "tail_shuffle")
    return 2.0 * lr_pixels * sum(macs[k] for k in ops), float(lr_pixels * sum(nbytes[k] for k in ops))


# -- timing ---------------------------------------------------------------------------------------------

def time_call(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds per call after warm-up."""
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=max(repeats, 20), return_mode="median") / 1e3
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rates(device: torch.device, dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    """(FLOP/s of a large matmul in ``dtype``, bytes/s of a large copy), measured now."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype if device.type == "cuda" else torch.float32)
    flops = 2 * n**3 / time_call(lambda: a @ a, device, repeats)
    src = torch.empty(2**28 if device.type == "cuda" else 2**25, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    bandwidth = 2 * src.numel() / time_call(lambda: dst.copy_(src), device, repeats)
    return flops, bandwidth


def peak_memory(fn: Callable[[], object], device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(device)


# -- the rows -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    preset: str
    scale: int
    out_w: int
    out_h: int
    batch: int
    dtype: str


def candidates(case: Case, device: torch.device, args) -> list[tuple[str, Callable]]:
    """(name, make) pairs; make() returns a zero-argument callable to time, or raises to skip the row."""
    from . import FastWDSR, folded_copy, ops, preset

    dtype = DTYPES[case.dtype]
    lr = torch.rand(case.batch, 3, case.out_h // case.scale, case.out_w // case.scale, device=device) * 255
    reference = preset(case.preset, case.scale).to(device).eval()
    rows = []

    def eager(channels_last):
        def make():
            model = copy.deepcopy(reference).to(dtype=dtype)
            x = lr.to(dtype)
            if channels_last:
                model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            return lambda: model(x)
        return make

    rows += [("reference", eager(False)), ("reference-cl", eager(True))]

    def compiled(mode):
        def make():
            if device.type != "cuda" and not args.compile_on_cpu:
                raise RuntimeError("torch.compile rows run on GPU only (add --compile-on-cpu)")
            model = folded_copy(reference).to(dtype=dtype).to(memory_format=torch.channels_last)
            fn = torch.compile(model, mode=mode)
            x = lr.to(dtype).contiguous(memory_format=torch.channels_last)
            return lambda: fn(x)
        return make

    compile_rows = {"all": [("compile", None), ("compile-max", "max-autotune")], "default": [("compile", None)],
                    "max": [("compile-max", "max-autotune")], "none": []}[args.compile_rows]
    rows += [(name, compiled(mode)) for name, mode in compile_rows]

    for backend in args.backends:
        for graphs in (False, True):
            def make(backend=backend, graphs=graphs):
                if graphs and device.type != "cuda":
                    raise RuntimeError("CUDA graphs need a GPU")
                reason = ops.unavailable_reason(backend, device, reference.config)
                if reason or (backend != "torch" and device.type != "cuda" and not args.triton_on_cpu):
                    raise RuntimeError(reason or f"{backend} on CPU is the interpreter (add --with-triton-on-cpu)")
                model = FastWDSR.from_reference(reference, backend=backend, cuda_graphs=graphs,
                                                check_finite=False).to(device).eval()
                x = lr.to(dtype)
                return lambda: model(x)
            rows.append((f"fast-{backend}" + ("+graphs" if graphs else ""), make))

    for op_name in ("wdsr_b_block", "tail_shuffle"):
        for backend in ["torch"] + [b for b in args.backends if b != "torch"]:  # torch = the reference op
            def make(op_name=op_name, backend=backend):
                if op_name == "wdsr_b_block" and reference.config.variant != "b":
                    raise RuntimeError("WDSR-A has no wdsr_b_block")
                reason = ops.unavailable_reason(backend, device, reference.config)
                if reason or (backend != "torch" and device.type != "cuda" and not args.triton_on_cpu):
                    raise RuntimeError(reason or f"{backend} on CPU is the interpreter (add --with-triton-on-cpu)")
                fns = ops.get_backend(backend)
                folded = FastWDSR.from_reference(reference).folded(device, dtype)
                x = torch.randn(case.batch, reference.config.n_feats, *lr.shape[-2:], device=device, dtype=dtype)
                x = x.contiguous(memory_format=torch.channels_last)
                image = lr.to(dtype)
                cfg = folded.config
                if op_name == "wdsr_b_block":
                    return lambda: fns.wdsr_b_block(x, *folded.blocks[0], cfg.res_scale)
                return lambda: fns.tail_shuffle(x, image, *folded.tail, *folded.skip, folded.mean,
                                                cfg.pixel_norm_scale, cfg.scale)
            rows.append((f"op:{op_name}:{backend}", make))
    return rows


def measure(case: Case, device: torch.device, args, peaks) -> list[dict]:
    cfg = WDSRConfig(**{**PRESETS[case.preset], "scale": case.scale})
    lr_pixels = case.batch * (case.out_h // case.scale) * (case.out_w // case.scale)
    element = torch.empty((), dtype=DTYPES[case.dtype]).element_size()
    results = []
    for name, make in candidates(case, device, args):
        row = {**dataclasses.asdict(case), "row": name}
        if name.startswith("op:"):
            key = name.split(":")[1]
            macs = macs_per_pixel(cfg)["block" if key == "wdsr_b_block" else key]
            nbytes = min_bytes_per_pixel(cfg, element)["block" if key == "wdsr_b_block" else key]
            flops, min_bytes = 2.0 * macs * lr_pixels, float(nbytes * lr_pixels)
        else:
            flops, min_bytes = model_work(cfg, lr_pixels, element)
        try:
            with torch.inference_mode():
                fn = make()
                seconds = time_call(fn, device, args.repeats)
                memory = peak_memory(fn, device)
        except Exception as exc:  # a row that cannot run here is reported, not fatal
            row["skipped"] = f"{type(exc).__name__}: {exc}"[:160]
            results.append(row)
            continue
        peak_flops, peak_bw = peaks[case.dtype]
        roofline = max(flops / peak_flops, min_bytes / peak_bw)
        row.update(ms=1e3 * seconds, ms_per_image=1e3 * seconds / case.batch,
                   mpix_per_s=case.batch * case.out_w * case.out_h / seconds / 1e6,
                   tflops=flops / seconds / 1e12, gbps=min_bytes / seconds / 1e9, roofline=roofline / seconds,
                   peak_mem_mb=None if memory is None else memory / 2**20)
        results.append(row)
    base = {r["row"]: r.get("ms") for r in results}
    if case.dtype == "fp32" and base.get("reference"):
        args.eager_fp32[_key(case)] = base["reference"]
    for r in results:
        if "ms" in r and not r["row"].startswith("op:"):
            if _key(case) in args.eager_fp32:
                r["vs_eager_fp32"] = args.eager_fp32[_key(case)] / r["ms"]
            if base.get("compile"):
                r["vs_compile"] = base["compile"] / r["ms"]
        elif "ms" in r and base.get(f"op:{r['row'].split(':')[1]}:torch"):
            r["vs_reference_op"] = base[f"op:{r['row'].split(':')[1]}:torch"] / r["ms"]
    return results


def _key(case: Case) -> tuple:
    return case.preset, case.scale, case.out_w, case.out_h, case.batch


# -- reporting ------------------------------------------------------------------------------------------

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


COLUMNS = ("preset", "scale", "out_w", "out_h", "batch", "dtype", "row", "ms_per_image", "mpix_per_s", "tflops",
           "gbps", "roofline", "vs_eager_fp32", "vs_compile", "vs_reference_op", "peak_mem_mb", "skipped")


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

    measured = [r for r in rows if "mpix_per_s" in r and not r["row"].startswith("op:")]
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


# -- command line ---------------------------------------------------------------------------------------

def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1920x1080, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="a run of under a minute: one small case")
    parser.add_argument("--presets", nargs="+", default=["wdsr-b-32x16", "wdsr-a-baseline"], choices=sorted(PRESETS))
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4], choices=(2, 3, 4))
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(256, 256), (1280, 720), (1920, 1080)],
                        help="output sizes WxH")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--dtypes", nargs="+", default=None, choices=sorted(DTYPES),
                        help="default: fp32 fp16 bf16 on GPU, fp32 on CPU")
    parser.add_argument("--backends", nargs="+", default=["torch", "triton", "cuda"],
                        choices=("torch", "triton", "cuda"))
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default: 5 CPU, 100 GPU)")
    parser.add_argument("--out", type=Path, help="results folder (default: benchmarks/results/<date>-<device>)")
    parser.add_argument("--with-triton-on-cpu", dest="triton_on_cpu", action="store_true",
                        help="time the Triton interpreter on CPU too (a correctness tool, very slow)")
    parser.add_argument("--compile-on-cpu", action="store_true", help="time torch.compile rows on CPU too (slow)")
    parser.add_argument("--compile", dest="compile_rows", choices=("all", "default", "max", "none"), default="all",
                        help="torch.compile rows: default and max-autotune (all), one of them, or none (max-autotune "
                             "compiles for minutes)")
    return parser


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="side-by-side throughput of every backend",
                                   description=__doc__.split("\n\n")[0])
    build_parser(parser).set_defaults(func=run)


def main(argv=None) -> int:
    return run(build_parser(argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0]))
               .parse_args(argv))


def run(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA GPU is visible to torch")
    if any(b < 1 for b in args.batch):
        raise SystemExit("error: --batch must be positive")
    if args.quick:
        args.presets, args.scales, args.sizes, args.batch = ["wdsr-b-32x16"], [2], [(256, 256)], [1]
        args.dtypes = args.dtypes or (["fp32", "fp16"] if device.type == "cuda" else ["fp32"])
    dtypes = args.dtypes or (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"])
    args.repeats = args.repeats or (100 if device.type == "cuda" else (3 if args.quick else 5))
    args.eager_fp32 = {}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    peaks = {d: peak_rates(device, DTYPES[d], args.repeats)
             for d in sorted(set(dtypes), key=["fp32", "fp16", "bf16"].index)}
    env = environment(device)
    env["peaks"] = {d: {"tflops": f / 1e12, "gbps": b / 1e9} for d, (f, b) in peaks.items()}
    rows = []
    for preset_name in args.presets:
        for scale in args.scales:
            for w, h in args.sizes:
                for batch in args.batch:
                    for dtype in sorted(dtypes, key=["fp32", "fp16", "bf16"].index):
                        rows += measure(Case(preset_name, scale, w, h, batch, dtype), device, args, peaks)
    print(f"{env['device']}, torch {env['torch']}, triton {env['triton']}, commit {env['commit']}; peaks: "
          + ", ".join(f"{d} {p['tflops']:.1f} TFLOP/s {p['gbps']:.0f} GB/s" for d, p in env["peaks"].items()))
    print(format_table(rows))
    out = args.out or Path("benchmarks/results") / f"{env['date'][:10]}-{device.type}{'-quick' if args.quick else ''}"
    write_results(rows, env, out)
    print(f"results in {out}/ (results.json, results.csv, throughput.png)")
    return 0
