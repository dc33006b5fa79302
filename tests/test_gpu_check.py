"""scripts/gpu_check, exercised without a GPU wherever a CPU can run what it runs: its dry run, the benchmark command
exactly as planned but on the CPU (--device cpu --quick), the test selections collected, the sanitizer command lines
and the program they run, the step records that let a later call skip a step, and the fit of every step in one
10-minute command."""
import os
import runpy
import shlex
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check"
gpu_check = runpy.run_path(str(SCRIPT), run_name="gpu_check")  # its functions, main() not run


@pytest.fixture(scope="module")
def steps():
    return {step.name: step for step in gpu_check["plan"]("out/gpu", python=sys.executable)}


def run_env(command):
    """The environment a step's command runs with, as run_step builds it."""
    return {**os.environ, **gpu_check["common_env"](), **command.env}


def test_dry_run_prints_every_step_command_and_duration(steps):
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for number, step in enumerate(steps.values(), 1):
        assert f"{number}. {step.name} (~{step.minutes:g} min)" in done.stdout
        for command in step.commands:
            assert shlex.join(command.argv) in done.stdout
    unknown = subprocess.run([sys.executable, str(SCRIPT), "nope"], capture_output=True, text=True, cwd=ROOT)
    assert unknown.returncode == 2 and "unknown step(s) nope" in unknown.stderr


def test_every_step_fits_one_command(steps):
    """Each step's commands are stopped before the 10-minute limit of a remote command, leaving time to write logs."""
    for step in steps.values():
        assert sum(c.timeout_s for c in step.commands) <= gpu_check["CALL_LIMIT_S"] - 30, step.name
        assert step.minutes < 10, step.name


def test_every_command_runs_from_the_repository_without_installing(steps):
    """Nothing is installed: the package comes from the repository (PYTHONPATH), pytest-xdist only if present."""
    env = gpu_check["common_env"]({"PATH": os.environ["PATH"]})
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    for step in steps.values():
        for command in step.commands:
            assert "pip" not in command.argv and "install" not in command.argv, command.argv
    without = gpu_check["plan"]("out/gpu", xdist=False)
    assert all("-n" not in c.argv for s in without for c in s.commands)
    assert "-n" in next(s for s in gpu_check["plan"]("out/gpu", xdist=True) if s.name == "tests-ops").commands[0].argv


def test_perf_comes_first_and_the_one_call_fits_ten_minutes(steps):
    """perf is the plan's first step; the one call runs perf, the layout probe and the headline bench (its cases
    written as measured), under a budget that leaves time to bring the results back."""
    assert list(steps)[:3] == list(gpu_check["ONE_CALL"]) == ["perf", "probe-triton-layouts", "bench"]
    assert gpu_check["ONE_CALL_BUDGET_S"] <= gpu_check["CALL_LIMIT_S"] - 30
    assert sum(steps[name].minutes for name in gpu_check["ONE_CALL"]) * 60 <= gpu_check["ONE_CALL_BUDGET_S"]
    [perf] = steps["perf"].commands
    assert perf.timeout_s <= 120 and steps["perf"].minutes <= 2
    assert float(perf.argv[perf.argv.index("--budget-s") + 1]) < perf.timeout_s
    done = subprocess.run([sys.executable, str(SCRIPT), "--one-call", "--dry-run"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0 and "3 steps" in done.stdout, done.stdout + done.stderr
    assert [line.split(". ", 1)[1].split(" ")[0] for line in done.stdout.splitlines()
            if line[:2] in ("1.", "2.", "3.")] == list(gpu_check["ONE_CALL"])


def test_headline_bench_cases_and_compile_rows(steps):
    """The headline bench: fp32 first (the others are compared with its eager time), fp16 1080p, the 1080p -> 4K
    video case; torch.compile's default mode; no per-row memory runs (each would compile a compile row again)."""
    [command] = steps["bench"].commands
    argv = command.argv
    cases = argv[argv.index("--cases") + 1:argv.index("--compile")]
    assert cases == list(gpu_check["HEADLINE_CASES"])
    assert cases[0].endswith(":fp32") and "wdsr-b-32x16:2:3840x2160:1:fp16" in cases
    assert argv[argv.index("--compile") + 1] == "default" and "--no-memory" in argv
    [other] = steps["bench-cases"].commands
    assert {"wdsr-b-32x16:2:1920x1080:4:fp16", "wdsr-a-baseline:2:1920x1080:1:fp16"} <= set(other.argv)


def test_perf_command_runs_on_the_cpu(steps, tmp_path):
    """The perf step's program as planned, on the CPU on a tiny map: the profile and ncu parts (ncu says why it is
    skipped), and the ops part with the reference ops (the Triton kernels need a GPU or the interpreter)."""
    [command] = steps["perf"].commands
    argv = command.argv[command.argv.index(sys.executable):]
    argv[argv.index("--out") + 1] = str(tmp_path)
    env = {k: v for k, v in run_env(command).items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([*argv, "--device", "cpu", "--size", "24x20"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "block reference (cuDNN)" in done.stdout and "ncu skipped: not on a GPU" in done.stdout
    assert "CUDA C++ rows left out" in done.stdout  # the CUDA kernels need CUDA tensors
    assert {p.name for p in tmp_path.iterdir()} == {"perf-ops.csv", "perf-profile.txt", "perf-ncu-tiled.txt",
                                                    "perf-ncu-persistent.txt", "perf-ncu-cuda-persistent.txt",
                                                    "perf-ncu-cuda-tiled.txt"}


def test_perf_times_both_cuda_block_kernels_where_the_extension_is_there(monkeypatch):
    """Where the CUDA backend runs (the extension built or carried; stubbed here), the ops part has a row per CUDA
    C++ block kernel, each call running that kernel's registered op."""
    import torch

    from wdsr_fast import ops
    from wdsr_fast.ops import cuda_backend

    gpu_perf = runpy.run_path(str(ROOT / "scripts" / "gpu_perf.py"), run_name="gpu_perf")
    ran = []
    monkeypatch.setattr(ops, "unavailable_reason", lambda *args, **kwargs: None)
    for variant in ops.CUDA_BLOCK_VARIANTS:  # the registered op of each kernel
        monkeypatch.setattr(cuda_backend, f"_wdsr_b_block_{variant}", lambda x, *rest, v=variant: ran.append(v) or x)
    variants, reason = gpu_perf["cuda_block_variants"](torch.device("cuda"), None, torch.float16)
    assert reason is None and [label for label, _ in variants] == ["cuda tiled", "cuda persistent"]
    for _, call in variants:
        call(torch.zeros(1), [torch.zeros(1)] * 6, 0.5)
    assert ran == ["tiled", "persistent"]
    assert list(gpu_perf["NCU_KERNELS"])[2:] == ["cuda-persistent", "cuda-tiled"]


def test_perf_times_every_block_kernel_in_the_interpreter(tmp_path):
    """The ops part with the Triton kernels (the interpreter, a tiny map): the tiled kernel and each kept
    configuration of the persistent one, each checked against the reference."""
    from wdsr_fast.ops.triton.block_b_persistent import CONFIGS

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "scripts/gpu_perf.py", "ops", "--device", "cpu", "--size", "16x14",
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout.split("op (16x14 float32)")[-1]
    for name in ["triton tiled", *[f"triton persistent {c.name}" for c in CONFIGS], "tail triton"]:
        line = next(line for line in table.splitlines() if line.startswith(("block " + name, name)))
        assert float(line.split()[-1]) < 1e-5, line


@pytest.mark.slow
def test_bench_command_runs_on_the_cpu(steps, tmp_path):
    """The benchmark command as planned, with --device cpu, tiny cases (and its output under tmp_path)."""
    for name in ("bench", "bench-cases", "bench-compile-max"):
        [command] = steps[name].commands
        argv = list(command.argv)
        assert argv[argv.index("--device") + 1] == "cuda" and argv[argv.index("--out") + 1] == f"out/gpu/{name}"
    [command] = steps["bench"].commands
    argv = list(command.argv)
    argv[argv.index("--device") + 1] = "cpu"
    argv[argv.index("--out") + 1] = str(tmp_path / "bench")
    first, last = argv.index("--cases") + 1, argv.index("--compile")
    argv[first:last] = [case.replace("1920x1080", "64x48").replace("3840x2160", "96x64") for case in argv[first:last]]
    argv[argv.index("--compile") + 1] = "none"
    done = subprocess.run(argv, cwd=ROOT, env=run_env(command), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "bench" / "results.json").exists() and "fast-torch" in done.stdout


def test_video_bench_runs_on_the_cpu(steps, tmp_path):
    """The bench-video step's program as planned (1080p -> 4K x2 in fp16 on the GPU), here on the CPU on a tiny
    clip: each NVENC encoder's line, the row's table naming the bound, its results.json, the 16-bit line."""
    pytest.importorskip("av")
    [command] = steps["bench-video"].commands
    argv = list(command.argv)
    planned = {flag: argv[argv.index(flag) + 1] for flag in ("--device", "--dtype", "--size", "--out")}
    assert planned == {"--device": "cuda", "--dtype": "fp16", "--size": "3840x2160", "--out": "out/gpu/bench-video"}
    for flag, value in (("--device", "cpu"), ("--dtype", "fp32"), ("--size", "64x48"), ("--frames", "3"),
                        ("--rounds", "1"), ("--out", str(tmp_path / "bench-video"))):
        argv[argv.index(flag) + 1] = value
    done = subprocess.run(argv, cwd=ROOT, env=run_env(command), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if "_nvenc: " in line] == ["hevc_nvenc", "h264_nvenc", "av1_nvenc"]
    assert "32x24 -> 64x48 (x2), 3 frames, batch 1, fp32, libx264" in done.stdout and "bound by" in done.stdout
    assert "16-bit frames on cpu (fp32) against the CPU's fp32: at most 0.00 10-bit levels apart" in done.stdout
    assert (tmp_path / "bench-video" / "libx264" / "results.json").is_file()


def test_video_bench_unpacks_a_carried_wheel_or_says_what_to_carry(tmp_path, monkeypatch):
    """Without PyAV on the machine: a wheel carried in out/wheels/ is unpacked and imported; with none, the step
    stops at once with one line saying what to carry."""
    hidden = subprocess.run([sys.executable, "-c", "import runpy, sys; sys.modules['av'] = None; "
                             f"sys.argv = ['gpu_video', '--wheels', {str(tmp_path)!r}]; "
                             "runpy.run_path('scripts/gpu_video.py', run_name='__main__')"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert hidden.returncode == 1 and hidden.stdout == ""
    assert hidden.stderr == (f"error: the Python module av is not on this machine and no wheel of it was carried in "
                             f"{tmp_path}/ (pip download av --no-deps -d {tmp_path}, then carry the file)\n")
    ensure_module = runpy.run_path(str(ROOT / "scripts" / "gpu_video.py"), run_name="gpu_video")["ensure_module"]
    monkeypatch.setattr(sys, "path", list(sys.path))
    with zipfile.ZipFile(tmp_path / "wdsr_fake_av-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("wdsr_fake_av/__init__.py", "VERSION = '1.0'\n")
    where = ensure_module("wdsr_fake_av", tmp_path, tmp_path / "unpacked")
    assert where == f"wdsr_fake_av-1.0-py3-none-any.whl, unpacked into {tmp_path / 'unpacked'}"
    assert sys.modules["wdsr_fake_av"].VERSION == "1.0"
    monkeypatch.delitem(sys.modules, "wdsr_fake_av")


@pytest.mark.parametrize("name", ["tests-ops", "tests-model"])
def test_test_selection_collects(steps, name):
    [command] = steps[name].commands
    done = subprocess.run([*command.argv, "--collect-only"], cwd=ROOT, env=run_env(command), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "error" not in done.stdout.lower().split("collected")[-1]
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    files = {arg for arg in command.argv if arg.startswith("tests/")}
    assert {line.split("::")[0] for line in collected} == files


def test_sanitizer_commands(steps):
    """Every tool on both backends, this project's kernels only, the caching allocator off, errors failing the step,
    the small case as the program."""
    seen = set()
    for name in ("sanitize-cuda", "sanitize-triton-memory", "sanitize-triton-sync"):
        for command in steps[name].commands:
            argv = command.argv
            assert Path(argv[0]).name == "compute-sanitizer"
            tool = argv[argv.index("--tool") + 1]
            backend = argv[argv.index("--backend") + 1]
            seen.add((backend, tool))
            assert argv[argv.index("--error-exitcode") + 1] != "0"
            filters = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--kernel-name"]
            assert filters == ["kns=wdsr_b_block", "kns=tail_shuffle", "kns=conv3x3"]
            api_checked = "--check-api-memory-access" not in argv  # off for initcheck only: it would flag every
            assert api_checked == (tool != "initcheck")              # copy of memory a PyTorch kernel wrote
            program = argv.index(sys.executable)
            assert all(arg.startswith("-") or argv[i - 1].startswith("-") for i, arg in enumerate(argv[1:program], 1))
            assert (ROOT / argv[program + 1]).is_file()
            assert command.env == {"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}
            assert command.log == f"sanitize-{backend}-{tool}.log"
    assert seen == {(b, t) for b in ("cuda", "triton") for t in gpu_check["SANITIZER_TOOLS"]}


def test_sanitizer_program_runs_on_the_cpu(steps):
    """The small case the sanitizers run, on the CPU with the torch backend: every dtype and scale."""
    command = steps["sanitize-cuda"].commands[0]
    argv = command.argv[command.argv.index(sys.executable):]
    argv[argv.index("--backend") + 1] = "torch"
    done = subprocess.run([*argv, "--device", "cpu"], cwd=ROOT, env=run_env(command), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "small case ok" in done.stdout, done.stdout + done.stderr


def test_layout_probe_runs_in_the_interpreter(steps):
    """The probe of the Triton block's input layouts, exactly as planned but on CPU tensors through the Triton
    interpreter (fp32 and fp16, the first shapes)."""
    command = steps["probe-triton-layouts"].commands[0]
    env = {**run_env(command), "TRITON_INTERPRET": "1"}
    done = subprocess.run([*command.argv, "--device", "cpu", "--dtypes", "fp32", "fp16", "--shapes", "2"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "0 case(s) failed" in done.stdout, done.stdout + done.stderr
    assert sum(line.endswith("  pass") for line in done.stdout.splitlines()) == 24  # 2 shapes, 2 dtypes, 6 forms
    assert done.stdout.strip().splitlines()[-1].startswith("verdict: ")


def test_pack_archives_every_result(tmp_path):
    """--pack leaves one archive holding every file the steps wrote (a device call brings back 8 files at most)."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--pack", "--budget-s", "5", "bench"], capture_output=True,
                          text=True, env={**os.environ, "OUT": str(out)}, timeout=60)
    assert "packed" in done.stdout
    (out / "logs").mkdir()
    (out / "logs" / "a.log").write_text("a")
    subprocess.run([sys.executable, str(SCRIPT), "--pack", "--budget-s", "5", "bench"], capture_output=True,
                   env={**os.environ, "OUT": str(out)}, timeout=60)
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        assert tar.getnames() == ["logs/a.log"]
    assert [p.name for p in out.iterdir()] == ["gpu_check.tar.gz"]  # the archive alone comes back


def test_the_end_of_each_log_is_printed(tmp_path, capsys):
    """What a device call's reply shows: the end of each step's log, whole lines, within a character budget."""
    Step, Command = gpu_check["Step"], gpu_check["Command"]
    (tmp_path / "a.log").write_text("".join(f"line {i}\n" for i in range(1000)))
    (tmp_path / "b.log").write_text("verdict: short\n")
    steps = [Step("a", "", 1, [Command(["x"], "a.log", 1)], ()), Step("b", "", 1, [Command(["x"], "b.log", 1)], ()),
             Step("c", "", 1, [Command(["x"], "missing.log", 1)], ())]
    gpu_check["print_tails"](steps, tmp_path, chars=200)
    printed = capsys.readouterr().out
    assert "---- end of a.log" in printed and "line 999" in printed and "line 900" not in printed
    assert "---- end of b.log\nverdict: short" in printed and "missing.log" not in printed
    assert all(line.startswith(("line ", "----", "verdict")) for line in printed.splitlines() if line)


def test_compute_sanitizer_is_found_in_the_cuda_toolkit(tmp_path):
    """Not on PATH: found under CUDA_HOME, in bin/ or in the toolkit's compute-sanitizer/ folder."""
    for layout in ("bin/compute-sanitizer", "compute-sanitizer/compute-sanitizer"):
        home = tmp_path / layout.replace("/", "_")
        for part in ("bin/nvcc", "include/cuda_runtime.h", layout):
            (home / part).parent.mkdir(parents=True, exist_ok=True)
            (home / part).write_text("")
        (home / layout).chmod(0o755)
        environ = {"PATH": str(tmp_path / "empty"), "CUDA_HOME": str(home)}
        assert gpu_check["find_compute_sanitizer"](environ) == str(home / layout)
        assert gpu_check["common_env"](environ)["PYTHONPATH"] == str(ROOT)
    assert gpu_check["find_compute_sanitizer"]({"PATH": str(tmp_path / "empty")}) in (
        "compute-sanitizer", *[str(Path(h) / "bin" / "compute-sanitizer") for h in gpu_check["cuda_homes"]({})])


def test_a_passed_step_is_skipped_until_its_sources_change(tmp_path):
    """The build step, its sources a kernel in a folder of csrc/."""
    step = next(s for s in gpu_check["plan"]("out", xdist=False, sanitizer="cs") if s.name == "build")
    (tmp_path / "csrc" / "cuda").mkdir(parents=True)
    (tmp_path / "csrc" / "cuda" / "kernel.cu").write_text("one")
    state = tmp_path / "state"
    already_done, mark_done = gpu_check["already_done"], gpu_check["mark_done"]
    assert not already_done(step, tmp_path, state)
    mark_done(step, tmp_path, state)
    assert not already_done(step, tmp_path, state)  # the library it builds is missing
    (tmp_path / "wdsr_fast").mkdir()
    (tmp_path / "wdsr_fast" / "_C.so").write_text("")
    assert already_done(step, tmp_path, state)
    (tmp_path / "csrc" / "cuda" / "kernel.cu").write_text("two")
    assert not already_done(step, tmp_path, state)
    assert gpu_check["expand"](["--report", "wdsr_fast/_C*.so"], tmp_path) == ["--report", "wdsr_fast/_C.so"]


def test_a_failing_or_overrunning_command_fails_its_step(tmp_path):
    Step, Command = gpu_check["Step"], gpu_check["Command"]
    slow = Step("slow", "", 1, [Command([sys.executable, "-c", "import time; time.sleep(30)"], "slow.log", 1)], ())
    assert not gpu_check["run_step"](slow, tmp_path, {})
    assert "stopped after 1 s" in (tmp_path / "slow.log").read_text()
    failing = Step("failing", "", 1, [Command([sys.executable, "-c", "raise SystemExit(3)"], "f.log", 30),
                                      Command([sys.executable, "-c", "print('not reached')"], "f.log", 30)], ())
    assert not gpu_check["run_step"](failing, tmp_path, {})
    assert "not reached" not in (tmp_path / "f.log").read_text()
    passing = Step("passing", "", 1, [Command([sys.executable, "-c", "print('hello')"], "p.log", 30)], ())
    assert gpu_check["run_step"](passing, tmp_path, {}) and "hello" in (tmp_path / "p.log").read_text()


def test_steps_needing_the_extension_fail_clearly_without_it_and_the_build_keeps_it(steps, tmp_path):
    """A step run without the built library (a fresh machine, nothing carried) fails at once, saying what to do;
    the build step leaves the library in $OUT, to be carried into later calls."""
    Step, Command = gpu_check["Step"], gpu_check["Command"]
    extension = gpu_check["EXTENSION"]
    assert all(extension in step.requires for name, step in steps.items()
               if name not in ("build", "perf", "probe-triton-layouts", "sanitize-triton-memory",
                               "sanitize-triton-sync", "bench", "bench-cases", "bench-compile-max", "bench-video"))
    assert not any(steps[name].requires for name in ("perf", "bench", "bench-cases", "bench-video"))  # C++ if built
    assert steps["build"].keep == (extension,)
    root, out = tmp_path / "repo", tmp_path / "out"
    (root / "wdsr_fast").mkdir(parents=True)
    out.mkdir()
    needing = Step("tests", "", 1, [Command([sys.executable, "-c", "print('ran')"], "t.log", 30)], (),
                   requires=(extension,))
    assert not gpu_check["run_step"](needing, out, {}, root)
    assert "needs wdsr_fast/_C*.so: run the build step first" in (out / "t.log").read_text()
    (root / "wdsr_fast" / "_C.cpython-312-x86_64-linux-gnu.so").write_text("library")
    assert gpu_check["run_step"](needing, out, {}, root)
    build = Step("build", "", 1, [Command([sys.executable, "-c", "pass"], "b.log", 30)], (), keep=(extension,))
    assert gpu_check["run_step"](build, out, {}, root)
    assert (out / "_C.cpython-312-x86_64-linux-gnu.so").read_text() == "library"


def test_a_budget_stops_the_running_command_and_skips_the_steps_after_it(tmp_path):
    """--budget-s: the command running when the call's budget ends is stopped (its log so far kept), and the steps
    not begun are named as not run; the exit status says the checks are incomplete."""
    Step, Command = gpu_check["Step"], gpu_check["Command"]
    slow = Step("slow", "", 1, [Command([sys.executable, "-c", "import time; time.sleep(30)"], "slow.log", 60)], ())
    started = time.monotonic()
    assert not gpu_check["run_step"](slow, tmp_path, {}, deadline=time.monotonic() + 2)
    assert time.monotonic() - started < 20
    assert "stopped after 2 s" in (tmp_path / "slow.log").read_text()
    done = subprocess.run([sys.executable, str(SCRIPT), "--budget-s", "5", "bench"], capture_output=True, text=True,
                          env={**os.environ, "OUT": str(tmp_path / "out")}, timeout=60)
    assert done.returncode == 1 and "not run (out of --budget-s): bench" in done.stdout
