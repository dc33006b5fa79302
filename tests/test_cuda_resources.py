"""csrc/cuda/'s kernels as nvcc builds them for sm_80 and sm_90 (no GPU needed): no local memory (no stack frame, no
spills) in any kernel, and tensor-core instructions (HMMA) in the fp16 and bf16 fused WDSR-B block kernels (tiled and
persistent), the persistent one's input copied with cp.async (LDGSTS) and its output stored as 16-byte vectors.

Skipped, with the reason, where nvcc (CUDA_HOME, default /usr/local/cuda-13.0) or cuobjdump (shipped in the
triton wheel) is missing. Registers per kernel are printed with -s for the record.

As a script, the same report and rules for a built extension (scripts/gpu_check's sass step):
    python tests/test_cuda_resources.py --report wdsr_fast/_C.cpython-312-x86_64-linux-gnu.so"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CUDA_SRC = Path(__file__).resolve().parents[1] / "csrc" / "cuda"
NVCC = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda-13.0")) / "bin" / "nvcc"
SOURCES = ("wdsr_b_block.cu", "wdsr_b_block_persistent.cu", "tail_shuffle.cu")
TENSOR_CORE_KERNELS = ("wdsr_b_block_mma", "wdsr_b_block_persistent")  # fp16 and bf16 instantiations of each

STACK_LINE = r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"


def sass_functions(tool: str, binary: str) -> dict[str, str]:
    """kernel name -> its SASS, from cuobjdump -sass of a cubin or a library."""
    sass = subprocess.run([tool, "-sass", binary], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"Function : (\w+)\n(.*?)(?=\n\s*Function : |\Z)", sass, re.S))


def cuobjdump():
    try:
        import triton
    except ImportError:
        return shutil.which("cuobjdump")
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return str(bundled) if bundled.exists() else shutil.which("cuobjdump")


pytestmark = pytest.mark.skipif(not NVCC.exists(), reason=f"needs nvcc ({NVCC} not found; set CUDA_HOME)")


def ptxas_report(log: str) -> dict[str, dict[str, int]]:
    """kernel name -> stack / spill_stores / spill_loads / registers, from nvcc -Xptxas -v output."""
    kernels, name = {}, None
    for line in log.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            name = m.group(1)
        elif name and (m := re.search(STACK_LINE, line)):
            kernels[name] = dict(zip(("stack", "spill_stores", "spill_loads"), map(int, m.groups()), strict=False))
        elif name and (m := re.search(r"Used (\d+) registers", line)):
            kernels[name]["registers"] = int(m.group(1))
    return kernels


@pytest.fixture(scope="module", params=["80", "90"], ids=lambda a: f"sm_{a}")
def builds(request, tmp_path_factory):
    arch, out = request.param, tmp_path_factory.mktemp(f"sm_{request.param}")
    results = {}
    for source in SOURCES:
        cubin = out / (Path(source).stem + ".cubin")
        done = subprocess.run([str(NVCC), "-std=c++17", "-O3", f"-arch=sm_{arch}", "-cubin", "-Xptxas", "-v",
                               str(CUDA_SRC / source), "-o", str(cubin)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        results[source] = (cubin, ptxas_report(done.stderr))
    return arch, results


@pytest.mark.parametrize("source", SOURCES)
def test_no_local_memory(builds, source):
    arch, results = builds
    kernels = results[source][1]
    assert kernels, f"no kernels found in the ptxas report of {source}"
    for name, usage in kernels.items():
        print(f"sm_{arch} {source} {name}: {usage}")
        assert usage["stack"] == usage["spill_stores"] == usage["spill_loads"] == 0, (name, usage)


def test_fused_block_uses_tensor_cores(builds):
    tool = cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found (it ships in the triton wheel)")
    functions = sass_functions(tool, str(builds[1]["wdsr_b_block.cu"][0]))
    mma = {name: body.count("HMMA") for name, body in functions.items() if "wdsr_b_block_mma" in name}
    assert len(mma) == 2 and all(mma.values()), mma  # fp16 and bf16 instantiations, each with HMMA
    assert not any("HMMA" in body for name, body in functions.items() if "wdsr_b_block_fma" in name)


def test_persistent_block_uses_tensor_cores_and_async_copies(builds):
    """The persistent kernel, fp16 and bf16: HMMA, its x tiles copied by cp.async (LDGSTS, 16 bytes, waited for with
    DEPBAR), y written as 16-byte vectors (STG.E.128); registers printed for the record (one CTA of 256 threads per
    SM, so up to 255 are free: its shared memory allows no second CTA)."""
    tool = cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found (it ships in the triton wheel)")
    arch, results = builds
    cubin, usage = results["wdsr_b_block_persistent.cu"]
    functions = {name: body for name, body in sass_functions(tool, str(cubin)).items()
                 if "wdsr_b_block_persistent" in name}
    assert len(functions) == 2, list(functions)
    for name, body in functions.items():
        counts = {op: body.count(op) for op in ("HMMA", "LDGSTS.E.BYPASS.128", "DEPBAR", "STG.E.128")}
        print(f"sm_{arch} {name}: {usage[name]} {counts}")
        assert all(counts.values()), (name, counts)
        assert usage[name]["registers"] * 256 <= 65536, usage[name]


def report(library: str) -> int:
    """Registers, stack bytes and HMMA count of every kernel in a built library; non-zero if a kernel has a stack
    or a tensor-core kernel has no HMMA."""
    tool = cuobjdump()
    if tool is None:
        print("cuobjdump not found (CUDA toolkit or the triton wheel)")
        return 1
    usage = subprocess.run([tool, "-res-usage", library], capture_output=True, text=True, check=True).stdout
    resources = dict(re.findall(r"Function (\w+):\s*\n\s*(REG:\d+ STACK:\d+[^\n]*)", usage))
    functions, ok = sass_functions(tool, library), True
    for name in sorted(set(resources) | set(functions)):
        line = resources.get(name, "")
        hmma = functions.get(name, "").count("HMMA")
        print(f"{name}: {line} HMMA:{hmma}")
        stack = re.search(r"STACK:(\d+)", line)
        ok &= not (stack and int(stack.group(1))) and (hmma > 0 or not any(k in name for k in TENSOR_CORE_KERNELS))
    print("resources ok" if ok and functions else "resources NOT ok")
    return 0 if ok and functions else 1


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="resource report of a built CUDA extension")
    parser.add_argument("--report", required=True, help="the built library (wdsr_fast/_C*.so)")
    raise SystemExit(report(parser.parse_args().report))
