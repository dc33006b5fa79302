"""The Triton kernels compile for sm_90 (H100) exactly as a 1080p launch would (``scripts/triton_sm90_compile.py
--quick``: every kernel in fp16, the fused blocks and the x2 tail in bf16 and fp32 too), and the speed-path kernels
(the tiled and the persistent WDSR-B block, the tail) in fp16/bf16 keep no stack (no local memory) and run every
tl.dot on wgmma (Hopper's tensor-core instruction). An NCHW x read as it is gives the tiled block's expand its A
operand in registers, never M-major in shared memory (the form of the first H100 run's wrong NCHW results).

No GPU is needed to compile; this guards the GPU-only rules the interpreter does not enforce."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

FAST = ("wdsr_b_block tiled", "wdsr_b_block persistent", "tail_shuffle")
DOT_SITES = {"wdsr_b_block": 3, "tail_shuffle": 2}  # expand, reduce, 3x3; tail taps, skip


@pytest.fixture(scope="module")
def report():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).parents[1] / "scripts" / "triton_sm90_compile.py"
    result = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout.splitlines()


def test_every_kernel_compiles_for_h100(report):
    kernels = [line for line in report if ": shared " in line]
    assert len(kernels) == 16  # fp16: 2 blocks x 2 layouts, 3 tails, 3 convs; bf16 and fp32: 2 blocks, tail x2
    assert not [line for line in report if "PROBLEM" in line]


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_fast_kernels_have_no_stack_and_every_dot_on_wgmma(report, dtype):
    lines = [line for line in report if line.startswith(FAST) and f" {dtype} channels_last" in line]
    assert len(lines) == (5 if dtype == "fp16" else 3), lines
    for line in lines:
        assert " stack 0 B," in line and "spill" not in line, line
        dots = line.split(" | ")[1].split("; ")
        assert len(dots) == DOT_SITES[line.split(" ")[0]], line
        assert all(re.search(r"\d+x wgmma m64n\d+k16", dot) for dot in dots), line
        assert "mma.sync" not in line, line


def test_nchw_block_takes_its_a_operand_from_registers(report):
    """The tiled block read on NCHW x (block_b.launch): the expand's A in registers (RS), not M-major (tA1)."""
    [line] = [line for line in report if line.startswith("wdsr_b_block tiled fp16 nchw")]
    expand = line.split(" | ")[1].split("; ")[0]
    assert " RS" in expand and "tA1" not in line, line
