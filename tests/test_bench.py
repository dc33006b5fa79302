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

from wdsr_fast import ops
from wdsr_fast.bench import measure
from wdsr_fast.bench.work import macs_per_pixel, min_bytes_per_pixel, model_work
from wdsr_fast.cli.bench import main
from wdsr_fast.model import PRESETS, WDSRConfig
from wdsr_fast.ops import cpu_backend


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


@pytest.mark.parametrize("flags, dtype, expected", [
    (["avx2", "fma", "avx512f", "avx512_bf16"], torch.bfloat16, torch.bfloat16),
    (["avx2", "fma", "avx512f", "amx_tile", "amx_bf16"], torch.bfloat16, torch.bfloat16),
    (["avx2", "fma"], torch.bfloat16, torch.float32),  # bf16 rows compute in fp32 there
    (["avx2", "fma", "avx512f", "avx512_bf16"], torch.float32, torch.float32),
])
def test_cpu_peak_matmul_dtype(monkeypatch, flags, dtype, expected):
    monkeypatch.setattr(measure, "cpu_flags", lambda: flags)
    assert measure.peak_dtype(torch.device("cpu"), dtype) == expected
    assert measure.peak_dtype(torch.device("cuda"), torch.float16) == torch.float16


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
    assert env["peak_matmul_dtypes"] == {"fp32": "float32"}
    assert set(env["cpu_flags"]) <= {"avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
    assert isinstance(env["kernel_env"], dict)  # WDSR_FAST_CPU_ISA and the like, where set
    assert (out / "results.csv").read_text().startswith("preset,scale")
    assert (out / "throughput.png").read_bytes()[:4] == b"\x89PNG"


ROWS_THAT_RUN_ON_CPU = ["eager", "eager-cl", "folded-cl", "folded-pad32-cl", "torchscript", "compile",
                        "compile-freezing", "onnxruntime", "fast-torch", "op:wdsr_b_block:reference",
                        "op:wdsr_b_block:torch", "op:tail_shuffle:reference", "op:tail_shuffle:torch"]


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


def test_fast_rows_against_the_fastest_peer(tiny_run):
    _, results, rows = tiny_run
    for threads in (1, 2):
        fast = rows[("fast-torch", threads)]
        peers = [r for r in results["rows"] if r["threads"] == threads and "ms" in r and r["op"] is None
                 and r["kind"] in ("eager", "folded", "torchscript", "compile", "runtime")
                 and r["computes_in"] == "fp32"]
        best = min(peers, key=lambda r: r["ms"])
        assert fast["best_peer"] == best["row"] and fast["vs_best_peer"] == pytest.approx(best["ms"] / fast["ms"])
        assert "best_peer" not in rows[("eager", threads)]  # peers are not raced against each other


@pytest.mark.parametrize("dtype, peers", [("fp32", {"openvino"}), ("bf16", {"openvino", "openvino-default"})])
def test_a_peer_in_lower_precision_races_only_that_precision(dtype, peers):
    """OpenVINO at its default (bf16 on bf16 CPUs) is no peer in an fp32 case; a peer in fp32 races every case."""
    from types import SimpleNamespace

    from wdsr_fast.bench.rows import FAST, RUNTIME, Case, Row

    def timed(label, kind, ms, computes_in):
        return measure.Timed(SimpleNamespace(threads=1), Row(label, kind, make=lambda: None),
                             {"ms": ms, "computes_in": computes_in})

    rows = [timed("fast-cpu", FAST, 10.0, dtype), timed("openvino", RUNTIME, 20.0, "fp32"),
            timed("openvino-default", RUNTIME, 5.0 if dtype == "fp32" else 15.0, "bf16")]
    measure.compare(Case("wdsr-b-32x16", 2, 64, 64, 1, dtype), rows, {})
    expected = min((r for r in rows[1:] if r.row.label in peers), key=lambda r: r.result["ms"])
    assert rows[0].result["best_peer"] == expected.row.label
    assert rows[0].result["vs_best_peer"] == expected.result["ms"] / 10.0


def test_peer_summary_names_plain_fast_rows_only(tiny_run):
    from wdsr_fast.bench.report import peer_summary

    _, results, rows = tiny_run
    lines = peer_summary(results["rows"]).splitlines()
    assert len(lines) == 2 and all(line.startswith("fast-torch, wdsr-b-32x16 x3 48x36 batch 2 fp32") for line in lines)
    fast = rows[("fast-torch", 2)]
    assert f"2 threads: {fast['ms_per_image']:.3g} ms, {fast['vs_best_peer']:.2f}x the fastest peer, " \
           f"{fast['best_peer']} (" in lines[1]


def test_rows_that_cannot_run_say_why(tiny_run):
    _, _, rows = tiny_run
    assert "max-autotune-on-cpu" in rows[("compile-max", 1)]["skipped"]
    for label in ("fast-torch+graphs", "eager-cl+graphs", "folded-pad32-cl+graphs"):
        assert "CUDA graphs need a GPU" in rows[(label, 1)]["skipped"], label
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
    if ops.unavailable_reason("cpu", "cpu"):
        pytest.skip(f"the cpu backend cannot run here: {ops.unavailable_reason('cpu', 'cpu')}")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_kernels.py"
    subprocess.run([sys.executable, str(script), "--threads", "1", "--block-sizes", "8x8", "--model-sizes", "8x8",
                    "--repeats", "1", "--out", str(tmp_path)], check=True, capture_output=True, timeout=600)
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    names = {r["row"] for r in rows}
    assert {"matmul", "block:reference", "blockA:cpu", "model:fast-cpu", "model:eager-cl"} <= names
    assert all(r["seconds"] > 0 for r in rows)


def test_frames_per_second_and_settings_recorded(tiny_run):
    _, results, rows = tiny_run
    row = rows[("fast-torch", 1)]
    assert row["fps"] == pytest.approx(1000 / row["ms_per_image"])
    env = results["environment"]
    assert env["tf32_convolutions"] in (True, False) and env["triton_block_variants"] == ["tiled", "persistent"]


def test_low_rank_padded_to_32_gives_the_same_outputs():
    """The folded WDSR-B with its low-rank convs widened to 32 channels by zeros: the same function."""
    from helpers import small_wdsr

    from wdsr_fast.bench.rows import pad_low_rank
    from wdsr_fast.model.fold import folded_copy

    reference = small_wdsr("b", 2, n_feats=8, low_rank=0.8).eval()  # low rank 6
    padded = pad_low_rank(folded_copy(reference))
    reduce, conv = padded.body[0].body[2], padded.body[0].body[3]
    assert (reduce.out_channels, conv.in_channels) == (32, 32)
    image = torch.rand(1, 3, 7, 9) * 255
    with torch.no_grad():
        assert torch.allclose(padded(image), reference(image), rtol=1e-5, atol=1e-4)
    a_model = folded_copy(small_wdsr("a", 2))
    assert pad_low_rank(a_model) is a_model  # WDSR-A: nothing low-rank, unchanged


def test_cases_option(tmp_path):
    """--cases measures exactly the cases named (the video case: 1080p in, 4K out, here scaled down)."""
    main(["--device", "cpu", "--cases", "wdsr-b-32x16:2:48x32:1:fp32", "wdsr-a-baseline:2:32x32:2:fp32",
          "--backends", "torch", "--repeats", "1", "--no-memory", "--compile", "none", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert {(r["preset"], r["out_w"], r["out_h"], r["batch"]) for r in rows} == {
        ("wdsr-b-32x16", 48, 32, 1), ("wdsr-a-baseline", 32, 32, 2)}
    a_rows = {r["row"]: r for r in rows if r["preset"] == "wdsr-a-baseline"}
    assert "WDSR-A has no low-rank convs" in a_rows["folded-pad32-cl"]["skipped"]


@pytest.mark.parametrize("text", ["wdsr-b-32x16:2:1920x1080:1", "nope:2:64x64:1:fp16", "wdsr-b-32x16:5:64x64:1:fp16",
                                  "wdsr-b-32x16:2:64x64:0:fp16", "wdsr-b-32x16:2:64x64:1:fp64"])
def test_bad_cases(text):
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--cases", text])


def test_gpu_defaults():
    """On a GPU: torch.compile's default mode (max-autotune only when asked), every Triton block kernel."""
    from wdsr_fast.bench import suite

    plan = suite.Plan.of("meta")
    assert plan.options.compile_rows == "default"
    assert plan.options.triton_block_variants == ("tiled", "persistent") and not plan.options.ieee_triton
    assert suite.Plan.of("cpu").options.compile_rows == "all"


def triton_setup(dtype="fp32", device="cpu", **options):
    """A case's setup for Triton rows; ``device`` only names the device (the tensors stay on the CPU)."""
    from wdsr_fast.bench.rows import Case, RowOptions, Setup

    setup = Setup.of(Case("wdsr-b-32x16", 2, 32, 28, 1, dtype), torch.device("cpu"),
                     RowOptions(("triton",), compile_rows="none", triton_on_cpu=True, **options), Path("."))
    setup.device = torch.device(device)
    return setup


def test_triton_rows_time_each_block_kernel():
    """The Triton rows come once per block kernel ("triton" the tiled one, "triton-persistent"), each running its
    kernel: the op rows of the block, run here in the interpreter on a tiny map, match the reference op."""
    from wdsr_fast.bench import rows as row_kinds
    from wdsr_fast.ops import reference
    from wdsr_fast.ops.triton import block_b_persistent

    if ops.unavailable_reason("triton", "cpu"):
        pytest.skip("the Triton interpreter is not available")
    setup = triton_setup()
    labels = {r.label: r for r in row_kinds.rows_of(setup)}
    assert {"fast-triton", "fast-triton+graphs", "fast-triton-persistent", "fast-triton-persistent+graphs",
            "op:wdsr_b_block:triton", "op:wdsr_b_block:triton-persistent", "op:tail_shuffle:triton"} <= set(labels)
    assert "op:tail_shuffle:triton-persistent" not in labels
    seen = []
    original = block_b_persistent.launch
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(block_b_persistent, "launch", lambda *a, **k: seen.append(1) or original(*a, **k))
        outputs = {}
        with torch.inference_mode():
            for label in ("op:wdsr_b_block:reference", "op:wdsr_b_block:triton", "op:wdsr_b_block:triton-persistent"):
                outputs[label] = labels[label].make()()
                assert len(seen) == (label == "op:wdsr_b_block:triton-persistent"), label
    assert reference  # the op rows' baseline is ops/reference.py
    for label in ("op:wdsr_b_block:triton", "op:wdsr_b_block:triton-persistent"):
        err = (outputs[label] - outputs["op:wdsr_b_block:reference"]).abs().max().item()
        assert err < 1e-4, (label, err)


def test_ieee_triton_rows_left_out_on_gpu_unless_asked(monkeypatch):
    """fp32 Triton on a GPU with TF32 off is IEEE (minutes of FMA): left out, saying how to add it; with TF32 on
    (PyTorch's default) or --with-ieee-triton it runs."""
    from wdsr_fast.bench import rows as row_kinds

    monkeypatch.setattr(row_kinds.ops, "unavailable_reason", lambda *a, **k: None)
    monkeypatch.setattr(row_kinds.ops, "tf32_convolutions", lambda: False)
    with pytest.raises(RuntimeError, match="--with-ieee-triton"):
        row_kinds.check_backend("triton", triton_setup(device="cuda"))
    row_kinds.check_backend("triton", triton_setup(device="cuda", ieee_triton=True))
    row_kinds.check_backend("triton", triton_setup("fp16", device="cuda"))
    monkeypatch.setattr(row_kinds.ops, "tf32_convolutions", lambda: True)
    row_kinds.check_backend("triton", triton_setup(device="cuda"))


def test_cuda_graph_rows_need_a_gpu():
    from wdsr_fast.bench.rows import cuda_graph

    with pytest.raises(RuntimeError, match="CUDA graphs need a GPU"):
        cuda_graph(lambda: torch.zeros(1), torch.device("cpu"))


@pytest.mark.skipif(ops.unavailable_reason("cpu", "cpu") is not None, reason="the CPU kernels are not built")
def test_wdsr_a_block_paths_and_bf16_peers(tmp_path, monkeypatch):
    """A WDSR-A case times the cpu backend with each way of running its blocks (a WDSR-B case too); a bf16 case on
    CPU races OpenVINO at its defaults (bf16 where the CPU has the units), not the fp32 runtimes. The results record
    what the blocks' first-call races measured (here WDSR-A's at 64 x 64 input pixels, with
    WDSR_FAST_CPU_BLOCK_A=fastest)."""
    monkeypatch.setenv(cpu_backend.BLOCK_A_ENV, "fastest")
    cpu_backend.forget_races()
    main(["--device", "cpu", "--cases", "wdsr-a-baseline:2:128x128:1:fp32", "wdsr-b-32x16:2:16x16:1:bf16",
          "--backends", "cpu", "--repeats", "1", "--no-memory", "--compile", "none", "--out", str(tmp_path)])
    rows = {(r["preset"], r["row"]): r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    for path in ("fused", "onednn"):
        row = rows[("wdsr-a-baseline", f"fast-cpu:a-{path}")]
        assert "skipped" not in row or "oneDNN" in row["skipped"], row
    assert "skipped" not in rows[("wdsr-a-baseline", "fast-cpu:a-fused")]
    if cpu_backend.bf16_isa() is not None:  # and the bf16 WDSR-B case each way of running its blocks
        for path in ("direct", "winograd", "onednn"):
            row = rows[("wdsr-b-32x16", f"fast-cpu:b-{path}")]
            assert "skipped" not in row or (path == "onednn" and "oneDNN" in row["skipped"]), row
        amx = rows[("wdsr-b-32x16", "fast-cpu:b-amx")]  # AMX tiles: timed where the CPU has them, for bf16
        assert ("skipped" not in amx) == cpu_backend.amx(), amx
    assert ("wdsr-a-baseline", "fast-cpu:a-amx") not in rows  # an fp32 case
    races = json.loads((tmp_path / "results.json").read_text())["environment"]["cpu_block_races"]
    assert races == {k: list(v) for k, v in cpu_backend.races().items()}
    assert any(key.startswith("WDSR-A float32: ") for key in races), races
    cpu_backend.forget_races()
    assert "raced in fp32" in rows[("wdsr-b-32x16", "onnxruntime")]["skipped"]
    default = rows[("wdsr-b-32x16", "openvino-default")]
    assert "skipped" not in default or "pip install" in default["skipped"], default
