"""``wdsr-fast bench --video``: end-to-end frames per second against the network alone, and the bounding stage."""
from __future__ import annotations

import json

import pytest

from wdsr_fast.bench.video import VideoBench, format_video_result, run_video_benchmark
from wdsr_fast.cli import main
from wdsr_fast.inference.video import STAGES
from wdsr_fast.ops import cpu_backend


def test_video_bench_reports_both_rates_and_the_bound(tmp_path, video_weights, capsys):
    result = run_video_benchmark(VideoBench(out_w=64, out_h=48, frames=5, rounds=2, batch=2,
                                            weights=str(video_weights), out=tmp_path / "results"))
    assert result["network_fps"] > 0 and result["end_to_end_fps"] > 0
    assert result["ratio"] == result["end_to_end_fps"] / result["network_fps"]
    assert result["bound_by"] in STAGES and set(result["busy_ms_per_frame"]) == set(STAGES)
    assert len(result["seconds"]["network"]) == len(result["seconds"]["end_to_end"]) == 2
    assert json.loads((tmp_path / "results" / "results.json").read_text())["frames"] == 5
    out = capsys.readouterr().out
    assert "32x24 -> 64x48 (x2), 5 frames, batch 2, fp32, libx264" in out
    assert "% of the network alone" in out and "bound by" in out


def test_the_bound_names_the_encoder(tmp_path, video_weights):
    result = run_video_benchmark(VideoBench(out_w=64, out_h=48, frames=2, rounds=1, weights=str(video_weights)))
    assert result["bench"]["batch"] == 1 and result["bench"]["half"] is False  # the CPU's default batch
    result["bound_by"] = "encode"
    assert format_video_result(result).endswith("; bound by encode (libx264)")


def test_bench_command_has_a_video_mode(tmp_path, video_weights, capsys):
    assert main(["bench", "--video", "--quick", "--device", "cpu", "--sizes", "64x48", "--weights",
                 str(video_weights), "--frames", "2"]) == 0
    assert "end to end (decode + network + encode" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--video measures fp32 or fp16"):
        main(["bench", "--video", "--quick", "--device", "cpu", "--sizes", "64x48", "--weights", str(video_weights),
              "--dtypes", "bf16"])
    # fp16 is the upscale command's --half: on a CPU bfloat16 where its kernels run it, else float32
    assert main(["bench", "--video", "--quick", "--device", "cpu", "--sizes", "64x48", "--weights",
                 str(video_weights), "--frames", "2", "--dtypes", "fp16"]) == 0
    half = "bf16" if cpu_backend.bf16_isa() is not None else "fp32"
    assert f", batch 1, {half}, libx264" in capsys.readouterr().out
