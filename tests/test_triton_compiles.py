"""The Triton kernels compile for sm_90 (H100), using tensor cores in fp16/bf16, and the fp16/bf16 fused block and
tail without local memory: every kernel in fp16, the fused block and tail in fp32 and bf16 too
(`python scripts/triton_sm90_compile.py` compiles all of them in all dtypes).

No GPU is needed to compile; this guards the GPU-only rules the interpreter does not enforce."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")


def test_kernels_compile_for_h100():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).parents[1] / "scripts" / "triton_sm90_compile.py"
    result = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("tensor cores yes") == 7 + 2  # fp16: 7 kernels; bf16: block and tail
