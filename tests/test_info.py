"""`wdsr-fast info`: what each kind of model file holds, and one clear line for files that are not models."""
import pytest
import torch
from helpers import parametrizations_keys, ychfan_state

import wdsr_fast
from wdsr_fast import WDSR, preset
from wdsr_fast.cli import main
from wdsr_fast.deploy.describe import describe_file
from wdsr_fast.weights import bundled_path


def small(variant="b", scale=2):
    torch.manual_seed(5)
    return WDSR(variant=variant, scale=scale, n_feats=8, n_resblocks=2, block_feats=24).eval()


def rows(path) -> dict:
    return dict(describe_file(path))


def test_bundled_weights():
    path = bundled_path(2)
    if path is None:
        pytest.skip("no bundled x2 weights in this install")
    info = rows(path)
    assert (info["architecture"], info["scale"], info["n_feats"], info["n_resblocks"]) == ("WDSR-B", "x2", "32", "16")
    assert info["wide_feats"].startswith("192") and info["low_rank_feats"].startswith("25")
    assert info["parameters"] == "303,604" and info["rgb_range"].startswith("255")
    assert info["source layout"].startswith("wdsr_fast") and info["weight norm"].startswith("weight_g")


@pytest.mark.parametrize("keys,layout,weight_norm", [
    ("legacy", "JiahuiYu", "weight_g / weight_v"),
    ("parametrizations", "JiahuiYu", "parametrizations.weight.original0"),
    ("plain", "JiahuiYu", "none"),
    ("ychfan", "ychfan", "weight_g / weight_v"),
    ("ychfan-parametrizations", "ychfan", "parametrizations"),
])
def test_authors_layouts(tmp_path, keys, layout, weight_norm):
    model = preset("ychfan-small", 3, n_feats=8, block_feats=24, n_resblocks=2) if "ychfan" in keys else small("a", 3)
    state = wdsr_fast.folded_copy(model).state_dict() if keys == "plain" else model.state_dict()
    if "ychfan" in keys:
        state = ychfan_state(model)
    if "parametrizations" in keys:
        state = parametrizations_keys(state)
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "epoch_30.pth")
    info = rows(tmp_path / "epoch_30.pth")
    assert info["source layout"].startswith(layout) and "'module.'" in info["source layout"]
    assert info["weight norm"].startswith(weight_norm)
    assert (info["architecture"], info["scale"], info["block_feats"]) == ("WDSR-A", "x3", "24 (wide 3x3)")
    assert info["rgb_range"].startswith("1 " if "ychfan" in keys else "255 ")


def test_onnx_file(tmp_path):
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    path = wdsr_fast.export_onnx(small("b", 4), tmp_path / "4x_WDSR-B_8x2.onnx", opset=15)
    info = rows(path)
    assert info["format"].startswith("ONNX (opset ai.onnx 15")
    assert (info["architecture"], info["scale"], info["n_feats"]) == ("WDSR-B", "x4", "8")
    assert info["input"] == "lr: float32 [batch, 3, height, width]"
    assert info["output"] == "sr: float32 [batch, 3, out_height, out_width]"
    assert info["metadata precision"] == "float32"
    folded = sum(p.numel() for name, p in small("b", 4).named_parameters() if not name.endswith("weight_g"))
    assert info["parameters"] == f"{folded:,} (folded weights and biases)"


def test_command_goes_on_past_bad_files(tmp_path, capsys):
    pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
    good = wdsr_fast.save_model(small(), tmp_path / "2x_WDSR-B_8x2.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage")
    files = [tmp_path / "missing.safetensors", tmp_path / "junk.pth", good, tmp_path / "junk.onnx"]
    assert main(["info", *map(str, files)]) == 1
    out, err = capsys.readouterr()
    assert "architecture:" in out and "WDSR-B" in out
    errors = err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert "missing.safetensors: no such checkpoint file" in errors[0]
    assert "junk.pth: not a checkpoint (neither a PyTorch file nor safetensors)" in errors[1]
    assert "junk.onnx: not a readable ONNX file" in errors[2]
