"""A benchmark run: the cases (presets x scales x output sizes x batches x dtypes) measured one by one against the
machine's measured peaks, then the table, JSON, CSV and plot written to a results folder."""
from __future__ import annotations

import dataclasses
import datetime
import os
import sys
import tempfile
from pathlib import Path

import torch

from .. import ops
from ..model import PRESETS, SCALES
from ..ops import cpu_backend
from .measure import CPU_MATMUL_SIZE, GPU_MATMUL_SIZE, measure, peak_dtype, peak_rates
from .memory import METHOD as CPU_MEMORY_METHOD
from .report import environment, format_table, peer_summary, short_cpu_name, write_results
from .rows import DTYPES, Case, RowOptions, Setup

DTYPE_ORDER = ("fp32", "fp16", "bf16")  # fp32 first: the other dtypes are compared with its eager time
DEFAULT_PRESETS = ("wdsr-b-32x16", "wdsr-a-baseline")
DEFAULT_SIZES = ((256, 256), (1280, 720), (1920, 1080))  # output width, height
GPU_CALLS_PER_ROUND = 100  # calls in each round's do_bench median


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a run measures, its defaults resolved."""

    device: torch.device
    cases: tuple[Case, ...]
    threads: tuple[int, ...]
    rounds: int
    memory: bool
    options: RowOptions
    out: Path
    quick: bool = False

    @classmethod
    def of(cls, device: str | torch.device = "cpu", quick: bool = False, presets=DEFAULT_PRESETS, scales=SCALES,
           sizes=DEFAULT_SIZES, batches=(1, 4), dtypes=None, backends=None, threads=None, repeats=None,
           memory=None, out=None, compile_rows=None, triton_on_cpu=False, max_autotune_on_cpu=False,
           cases=None, ieee_triton=False, triton_blocks=None) -> Plan:
        """A plan from the command's options (``None``: the default, which may depend on the device and
        ``quick``); a ``ValueError`` for values no run can take. ``cases``: Case objects (``parse_case``), measured
        instead of the product of presets, scales, sizes, batches and dtypes."""
        device = torch.device(device)
        assert isinstance(device, torch.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda but no CUDA GPU is visible to torch")
        for name, values in (("batch", batches), ("threads", threads or ()),
                             ("repeats", () if repeats is None else (repeats,))):
            if any(v < 1 for v in values):
                raise ValueError(f"--{name} must be positive")
        on_cpu = device.type == "cpu"
        if quick:
            presets, scales, sizes, batches = ["wdsr-b-32x16"], [2], [(256, 256)], [1]
            dtypes = dtypes or (["fp32"] if on_cpu else ["fp32", "fp16"])
        dtypes = sorted(set(dtypes or (DTYPE_ORDER if not on_cpu else ["fp32"])), key=DTYPE_ORDER.index)
        if cases:
            cases = tuple(cases)
        else:
            cases = tuple(Case(p, s, w, h, b, d) for p in presets for s in scales for w, h in sizes for b in batches
                          for d in dtypes)
        # torch.compile: every mode on CPU (none with --quick); its default mode on GPU (max-autotune tunes for
        # minutes there: --compile max or all).
        options = RowOptions(tuple(backends or reversed(ops.BACKENDS)),
                             compile_rows or ("none" if quick and on_cpu else "all" if on_cpu else "default"),
                             max_autotune_on_cpu, triton_on_cpu, ieee_triton,
                             tuple(triton_blocks or ops.TRITON_BLOCK_VARIANTS))
        return cls(device=device, cases=cases,
                   threads=tuple(sorted(set(threads or [torch.get_num_threads()]))) if on_cpu
                   else (torch.get_num_threads(),),
                   rounds=repeats or (3 if on_cpu and quick else 7 if on_cpu else 3),
                   memory=(not (quick and on_cpu)) if memory is None else memory, options=options,
                   out=Path(out) if out else default_folder(device, quick), quick=quick)

    @property
    def dtypes(self) -> list[str]:
        return sorted({c.dtype for c in self.cases}, key=DTYPE_ORDER.index)


def parse_case(text: str) -> Case:
    """``PRESET:SCALE:WxH:BATCH:DTYPE`` (output size), e.g. ``wdsr-b-32x16:2:3840x2160:1:fp16``."""
    try:
        preset_name, scale, size, batch, dtype = text.split(":")
        width, height = (int(v) for v in size.lower().split("x"))
        case = Case(preset_name, int(scale), width, height, int(batch), dtype)
    except ValueError:
        raise ValueError(f"a case looks like wdsr-b-32x16:2:1920x1080:1:fp16 (preset:scale:WxH:batch:dtype), "
                         f"got {text!r}") from None
    if case.preset not in PRESETS or case.scale not in SCALES or case.dtype not in DTYPES or case.batch < 1 \
            or min(width, height) < case.scale:
        raise ValueError(f"case {text!r}: a preset of {sorted(PRESETS)}, a scale of {SCALES}, a dtype of "
                         f"{sorted(DTYPES)}, a positive batch and an output at least the scale wide")
    return case


def default_folder(device: torch.device, quick: bool) -> Path:
    """benchmarks/results/<date>-<device>, with the CPU's short name on CPU."""
    name = "cpu-" + short_cpu_name() if device.type == "cpu" else device.type
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return Path("benchmarks/results") / f"{date}-{name}{'-quick' if quick else ''}"


def run_benchmark(plan: Plan) -> Path:
    """Measure every case of ``plan``, print the table and write the results; returns the results folder."""
    if plan.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    env, peaks = measure_machine(plan)
    rows: list[dict] = []
    eager_fp32: dict = {}
    for number, case in enumerate(plan.cases, 1):
        print(f"measuring {case.preset} x{case.scale} {case.out_w}x{case.out_h} batch {case.batch} {case.dtype}, "
              f"threads {', '.join(map(str, plan.threads))}, {plan.rounds} rounds ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as folder:
            setup = Setup.of(case, plan.device, plan.options, Path(folder))
            rows += measure(setup, list(plan.threads), plan.rounds, GPU_CALLS_PER_ROUND, peaks[case.dtype],
                            eager_fp32, plan.memory)
        if number < len(plan.cases):  # a run stopped later (a device lease's budget) keeps the cases measured
            env["cases_measured"] = f"{number} of {len(plan.cases)}"
            write_results(rows, env, plan.out)
    env.pop("cases_measured", None)
    if plan.device.type == "cpu":  # what the CPU blocks' first-call races measured (AMX CPUs, `fastest`)
        env["cpu_block_races"] = cpu_backend.races()
    if hasattr(os, "getloadavg"):
        env["load_average_at_end"] = os.getloadavg()
    print(f"{env['device']} ({', '.join(env['cpu_flags']) or env['torch_cpu_capability']}), torch {env['torch']}, "
          f"commit {env['commit']}; {env['peak_matmul']} and copy peaks: "
          + "; ".join(f"{d} {t} thr {p['gflops']:.0f} GFLOP/s ({env['peak_matmul_dtypes'][d]}) {p['gbps']:.0f} GB/s"
                      for d, by_threads in env["peaks"].items() for t, p in by_threads.items()))
    print(format_table(rows))
    if summary := peer_summary(rows):
        print(summary)
    if not plan.memory:
        print("peak memory not measured" + (" (--quick; --memory measures it)" if plan.quick else ""))
    write_results(rows, env, plan.out)
    return plan.out


def measure_machine(plan: Plan) -> tuple[dict, dict]:
    """The environment record and the measured matmul and copy peaks per dtype and thread count."""
    on_cpu = plan.device.type == "cpu"
    env = environment(plan.device)
    peaks = {d: peak_rates(plan.device, DTYPES[d], list(plan.threads), plan.rounds, GPU_CALLS_PER_ROUND)
             for d in plan.dtypes}
    env["peaks"] = {d: {str(t): {"gflops": f / 1e9, "gbps": b / 1e9} for t, (f, b) in p.items()}
                    for d, p in peaks.items()}
    env["peak_matmul_dtypes"] = {d: str(peak_dtype(plan.device, DTYPES[d])).removeprefix("torch.")
                                 for d in plan.dtypes}
    env["peak_matmul"] = f"{CPU_MATMUL_SIZE if on_cpu else GPU_MATMUL_SIZE}^3 matmul"
    env["threads"], env["rounds"] = list(plan.threads), plan.rounds
    env["tf32_convolutions"] = ops.tf32_convolutions()  # fp32: cuDNN's convolutions and the Triton dots
    env["triton_block_variants"] = list(plan.options.triton_block_variants)
    env["peak_memory_method"] = (CPU_MEMORY_METHOD if on_cpu else "torch.cuda.max_memory_allocated of one forward"
                                 ) if plan.memory else None
    return env, peaks
