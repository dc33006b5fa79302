"""The benchmark's work counts (checked by hand), and tiny runs: every row kind gives a row (checked against the
reference) or a reason, the results are written, the peak memory of a row is measured. No timing is asserted."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wdsr_fast.bench.work import macs_per_pixel, min_bytes_per_pixel, model_work
from wdsr_fast.cli.bench import main
from wdsr_fast.model import PRESETS, WDSRConfig


def config(name, scale=2):
    return WDSRConfig(**{**PRESETS[name], "scale": scale})


def test_wdsr_b_macs():
    macs = macs_per_pixel(config("wdsr-b-32x16"))
    assert macs["block"] == 32 * 192 + 192 * 25 + 9 * 25 * 32 == 18_144
    assert macs["head_conv"] + macs["blocks"] + macs["tail_shuffle"] == 295_524  # ~295.5 K MAC per LR pixel


def test_wdsr_a_macs_and_scale():
    macs = macs_per_pixel(config("wdsr-a-baseline"))
    assert macs["head_conv"] + macs["blocks"] + macs["tail_shuffle"] == 1_184_868  # ~1.185 M
    assert macs_per_pixel(config("wdsr-a-baseline", 4))["tail_shuffle"] == 9 * 32 * 48 + 75 * 48


def test_minimum_bytes_and_flops():
    cfg = config("wdsr-b-32x16")
    assert min_bytes_per_pixel(cfg, 2)["block"] == 128  # read 32 + write 32 fp16 channels
    flops, nbytes = model_work(cfg, 960 * 540, 2)
    assert flops == pytest.approx(2 * 295_524 * 960 * 540)
    assert nbytes == 960 * 540 * 2 * ((3 + 32) + 16 * 64 + (32 + 3 + 12))


TINY = ["--device", "cpu", "--presets", "wdsr-b-32x16", "--scales", "3", "--sizes", "48x36", "--batch", "2",
        "--backends", "torch", "--repeats", "1", "--no-memory"]


@pytest.mark.parametrize("choice,rows", [("none", set()), ("default", {"compile", "compile-freezing"}),
                                         ("max", {"compile-max"}), ("all", {"compile", "compile-freezing",
                                                                           "compile-max"})])
def test_compile_rows_can_be_left_out(tmp_path, monkeypatch, choice, rows):
    from wdsr_fast.bench import rows as row_kinds

    compile_ = torch.compile  # the rows' plumbing, through torch.compile's "eager" backend (no inductor minutes)
    monkeypatch.setattr(row_kinds.torch, "compile", lambda model, **kw: compile_(model, backend="eager"))
    main(TINY + ["--compile", choice, "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["row"] for r in results["rows"]} & {"compile", "compile-freezing", "compile-max"} == rows


def test_bad_batch():
    with pytest.raises(SystemExit, match="batch"):
        main(["--device", "cpu", "--batch", "0"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run at 1 and 2 threads, every row kind and an added one ("peer"); torch.compile through its "eager"
    backend (the row's plumbing, not inductor's minutes of compiling)."""
    from wdsr_fast.bench import rows

    def peer_rows(s):
        return [rows.Row("peer", "peer-runtime", lambda: lambda: s.reference(s.lr), backend="peer")]

    out = tmp_path_factory.mktemp("bench")
    compile_, kinds = torch.compile, rows.ROW_KINDS
    rows.torch.compile = lambda model, **kw: compile_(model, backend="eager")
    rows.ROW_KINDS = kinds + (peer_rows,)
    try:
        assert main(TINY + ["--threads", "1", "2", "--out", str(out)]) == 0
    finally:
        rows.torch.compile, rows.ROW_KINDS = compile_, kinds
    results = json.loads((out / "results.json").read_text())
    return out, results, {(r["row"], r["threads"]): r for r in results["rows"]}


def test_run_writes_results(tiny_run, capsys):
    out, results, _ = tiny_run
    env = results["environment"]
    assert env["torch"] and env["cpu"] and env["torch_cpu_capability"] and env["peak_matmul"] == "2048^3 matmul"
    assert set(env["peaks"]["fp32"]) == {"1", "2"} and env["peaks"]["fp32"]["1"]["gflops"] > 0
    assert set(env["cpu_flags"]) <= {"avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
    assert isinstance(env["kernel_env"], dict)  # WDSR_FAST_CPU_ISA and the like, where set
    assert (out / "results.csv").read_text().startswith("preset,scale")
    assert (out / "throughput.png").read_bytes()[:4] == b"\x89PNG"


ROWS_THAT_RUN_ON_CPU = ["eager", "eager-cl", "folded-cl", "torchscript", "compile", "compile-freezing", "onnxruntime",
                        "fast-torch", "op:wdsr_b_block:reference", "op:wdsr_b_block:torch",
                        "op:tail_shuffle:reference", "op:tail_shuffle:torch"]


@pytest.mark.parametrize("label", ROWS_THAT_RUN_ON_CPU)
def test_every_row_kind_runs_and_matches_the_reference(tiny_run, label):
    _, _, rows = tiny_run
    for threads in (1, 2):
        row = rows[(label, threads)]
        assert "skipped" not in row, row["skipped"]
        assert row["ms"] > 0 and row["gflops"] > 0 and 0 < row["of_peak"] and row["first_call_s"] > 0
        assert row["rel_err"] < 1e-4, row["rel_err"]  # the same output as the eager fp32 reference (or op)
    assert rows[(label, 2)]["thread_scaling"] > 0


def test_comparisons(tiny_run):
    _, _, rows = tiny_run
    assert rows[("eager", 1)]["vs_eager_fp32"] == 1.0 and rows[("compile", 2)]["vs_compile"] == 1.0
    assert rows[("op:wdsr_b_block:reference", 1)]["vs_reference_op"] == 1.0
    assert rows[("op:wdsr_b_block:torch", 1)]["vs_reference_op"] > 0


def test_rows_that_cannot_run_say_why(tiny_run):
    _, _, rows = tiny_run
    assert "max-autotune-on-cpu" in rows[("compile-max", 1)]["skipped"]
    assert "CUDA graphs need a GPU" in rows[("fast-torch+graphs", 1)]["skipped"]
    for label, tolerance in (("openvino", 1e-4), ("openvino-default", 5e-2)):  # the default: bf16 on bf16 CPUs
        row = rows[(label, 1)]
        if importlib.util.find_spec("openvino") is None:
            assert "pip install 'wdsr-fast[bench]'" in row["skipped"]
        else:
            assert "skipped" not in row and row["rel_err"] < tolerance, (label, row)


def test_missing_runtimes_are_named(monkeypatch, tmp_path):
    from wdsr_fast.bench import runtimes

    for module in ("openvino", "onnxruntime"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails
    image = np.zeros((1, 3, 4, 4), np.float32)
    for runner, name in ((runtimes.openvino_runner, "openvino"), (runtimes.onnxruntime_runner, "onnxruntime")):
        with pytest.raises(RuntimeError, match=f"{name} is not installed: pip install 'wdsr-fast\\[bench\\]'"):
            runner(tmp_path / "model.onnx", image, 1)


def test_no_compile_and_quick_flags(tmp_path, capsys):
    assert main(TINY + ["--compile", "none", "--out", str(tmp_path)]) == 0
    rows = {r["row"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    assert not {"compile", "compile-freezing", "compile-max"} & set(rows) and rows["fast-torch"]["ms"] > 0
    assert "fast-torch" in capsys.readouterr().out


def test_peak_memory_of_a_row_in_a_fresh_process():
    """On Linux: the forward's peak resident memory above the baseline, at least its output (3 x 96 x 72 fp32)."""
    from wdsr_fast.bench.memory import peak_memory_cpu
    from wdsr_fast.bench.rows import Case, RowOptions

    if not sys.platform.startswith("linux"):
        pytest.skip("peak memory is measured on Linux only")
    options = RowOptions(backends=("torch",), compile_rows="none")
    peak = peak_memory_cpu(Case("wdsr-b-32x16", 2, 192, 144, 1, "fp32"), options, 1, "folded-cl")
    assert 3 * 192 * 144 * 4 < peak < 2**30


def test_short_cpu_name(monkeypatch):
    from wdsr_fast.bench import report

    monkeypatch.setattr(report, "cpu_name", lambda: "AMD EPYC 7B13 64-Core Processor")
    monkeypatch.setattr(report.torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert report.short_cpu_name() == "amd-epyc-7b13-avx2"
    monkeypatch.setattr(report, "cpu_name", lambda: "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz")
    assert report.short_cpu_name() == "intel-xeon-platinum-avx2"


@pytest.mark.parametrize("argv", [["--sizes", "big"], ["--scales", "5"], ["--presets", "nope"], ["--threads", "two"]])
def test_bad_arguments(argv):
    with pytest.raises(SystemExit):
        main(["--device", "cpu"] + argv)


@pytest.mark.parametrize("flag", ["--batch", "--threads", "--repeats"])
def test_non_positive_counts(flag):
    with pytest.raises(SystemExit, match=flag.strip("-")):
        main(["--device", "cpu", flag, "0"])


def test_a_new_row_kind_is_one_function(tiny_run):
    """Rows are data: a kind added to ROW_KINDS (the fixture adds "peer") is timed, stored with its fields and
    compared like the others."""
    _, _, rows = tiny_run
    peer = rows[("peer", 1)]
    assert (peer["kind"], peer["backend"], peer["op"]) == ("peer-runtime", "peer", None)
    assert peer["ms"] > 0 and peer["vs_eager_fp32"] > 0 and peer["rel_err"] < 1e-4


def test_cpu_kernels_script_runs(tmp_path):
    """benchmarks/cpu_kernels.py end to end on a tiny case: every row it promises, with a time."""
    from wdsr_fast import ops

    if ops.unavailable_reason("cpu", "cpu"):
        pytest.skip(f"the cpu backend cannot run here: {ops.unavailable_reason('cpu', 'cpu')}")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_kernels.py"
    subprocess.run([sys.executable, str(script), "--threads", "1", "--block-sizes", "8x8", "--model-sizes", "8x8",
                    "--repeats", "1", "--out", str(tmp_path)], check=True, capture_output=True, timeout=600)
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    names = {r["row"] for r in rows}
    assert {"matmul", "block:reference", "blockA:cpu", "model:fast-cpu", "model:eager-cl"} <= names
    assert all(r["seconds"] > 0 for r in rows)
