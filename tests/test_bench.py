"""The benchmark's work counts (checked by hand) and a tiny run writing its JSON, CSV and plot."""
import json

import pytest

from wdsr_fast.bench import main
from wdsr_fast.bench.work import macs_per_pixel, min_bytes_per_pixel, model_work
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


def test_quick_run_writes_results(tmp_path, capsys):
    assert main(["--device", "cpu", "--presets", "wdsr-b-32x16", "--scales", "3", "--sizes", "48x36", "--batch",
                 "2", "--backends", "torch", "--repeats", "1", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {r["row"]: r for r in results["rows"]}
    assert rows["reference"]["vs_eager_fp32"] == 1.0 and rows["fast-torch"]["ms"] > 0
    assert "skipped" in rows["compile"] and "skipped" in rows["fast-torch+graphs"]
    assert results["environment"]["torch"]
    assert (tmp_path / "results.csv").read_text().startswith("preset,scale")
    assert (tmp_path / "throughput.png").read_bytes()[:4] == b"\x89PNG"
    assert "fast-torch" in capsys.readouterr().out


@pytest.mark.parametrize("choice,rows", [("none", set()), ("default", {"compile"}), ("max", {"compile-max"}),
                                         ("all", {"compile", "compile-max"})])
def test_compile_rows_can_be_left_out(tmp_path, choice, rows):
    main(["--device", "cpu", "--presets", "wdsr-b-32x16", "--scales", "3", "--sizes", "48x36", "--batch", "1",
          "--backends", "torch", "--repeats", "1", "--compile", choice, "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["row"] for r in results["rows"]} & {"compile", "compile-max"} == rows


@pytest.mark.parametrize("argv", [["--sizes", "big"], ["--scales", "5"], ["--presets", "nope"]])
def test_bad_arguments(argv):
    with pytest.raises(SystemExit):
        main(["--device", "cpu"] + argv)


def test_bad_batch():
    with pytest.raises(SystemExit, match="batch"):
        main(["--device", "cpu", "--batch", "0"])


def test_a_new_row_kind_is_one_function(tmp_path, monkeypatch):
    """Rows are data: a kind added to ROW_KINDS is timed, stored with its fields and compared like the others."""
    from wdsr_fast.bench import rows

    def peer_rows(s):
        return [rows.Row("peer", "peer-runtime", lambda: lambda: s.reference(s.lr), backend="peer")]

    monkeypatch.setattr(rows, "ROW_KINDS", rows.ROW_KINDS + (peer_rows,))
    assert main(["--device", "cpu", "--presets", "wdsr-b-32x16", "--scales", "2", "--sizes", "32x32", "--batch", "1",
                 "--backends", "torch", "--repeats", "1", "--out", str(tmp_path)]) == 0
    results = {r["row"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    peer = results["peer"]
    assert (peer["kind"], peer["backend"], peer["op"]) == ("peer-runtime", "peer", None)
    assert peer["ms"] > 0 and peer["vs_eager_fp32"] > 0
    assert results["op:tail_shuffle:torch"]["op"] == "tail_shuffle"
