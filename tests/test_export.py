"""ONNX export: files run in ONNX Runtime at sizes and batches other than the traced ones and match the float64
reference (fp32 below 1e-4, fp16 below 5e-3, relative to the output's largest value); config in the metadata;
a failing check replaces nothing; the command's errors are one line."""
import json

import numpy as np
import pytest
import torch
from helpers import photo

import wdsr_fast
from wdsr_fast import WDSR, WDSRConfig
from wdsr_fast.cli import main
from wdsr_fast.deploy import onnx as export
from wdsr_fast.deploy.onnx import ExportError, export_onnx
from wdsr_fast.weights import bundled_path

onnx = pytest.importorskip("onnx", reason="the [onnx] extra (onnx, onnxruntime) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra (onnx, onnxruntime) is not installed")

PLAIN_OPS = {"Conv", "Relu", "Add", "Sub", "Mul", "Div", "DepthToSpace", "Constant"}
# Neither the traced size (export.TRACE_SIZE) nor the export's own check sizes (export.CHECK_SIZES).
RUN_SIZES = ((2, 23, 16), (2, 40, 51))


def small(variant="b", scale=2, **kw):
    torch.manual_seed(3)
    return WDSR(**{**dict(variant=variant, scale=scale, n_feats=8, n_resblocks=2, block_feats=24), **kw}).eval()


def run_onnx(path, image: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["sr"], {"lr": image.numpy()})
    return torch.from_numpy(out)


def reference64(model: WDSR, image: torch.Tensor) -> torch.Tensor:
    model64 = WDSR.from_config(model.config).double().eval()
    model64.load_state_dict(model.state_dict())
    with torch.no_grad():
        return model64(image.double())


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert out.shape == ref.shape
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


def test_run_sizes_differ_from_the_exported_ones():
    for _, height, width in RUN_SIZES:
        assert (height, width) != export.TRACE_SIZE and (height, width) not in export.CHECK_SIZES


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bundled_weights_dynamic_shapes(tmp_path, scale):
    weights = bundled_path(scale)
    if weights is None:
        pytest.skip(f"no bundled x{scale} weights in this install")
    model = wdsr_fast.load_model(weights)
    path = export_onnx(model, tmp_path / f"{scale}x_WDSR-B_32x16.onnx")
    for batch, height, width in RUN_SIZES:
        image = photo(height, width, batch) * 255
        out = run_onnx(path, image)
        assert out.shape == (batch, 3, scale * height, scale * width) and out.dtype == torch.float32
        assert rel_error(out, reference64(model, image)) < 1e-4


@pytest.mark.parametrize("variant,scale", [("a", 3), ("b", 4)])
def test_authors_normalisation_and_other_variants(tmp_path, variant, scale):
    model = small(variant, scale, rgb_range=1.0, rgb_mean=(0.5, 0.5, 0.5), norm_scale=1.0, res_scale=0.7)
    path = export_onnx(model, tmp_path / "m.onnx", opset=13)
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 13
    assert {node.op_type for node in proto.graph.node} <= PLAIN_OPS
    for batch, height, width in RUN_SIZES:
        image = photo(height, width, batch)
        assert rel_error(run_onnx(path, image), reference64(model, image)) < 1e-4


def test_half_export(tmp_path):
    model = wdsr_fast.load_model(bundled_path(2)) if bundled_path(2) else small()
    path = export_onnx(model, tmp_path / "half.onnx", half=True)
    proto = onnx.load(str(path))
    assert {init.data_type for init in proto.graph.initializer} == {onnx.TensorProto.FLOAT16}
    for batch, height, width in RUN_SIZES:
        image = (photo(height, width, batch) * 255).half()
        out = run_onnx(path, image)
        assert out.dtype == torch.float16
        assert rel_error(out, reference64(model, image)) < 5e-3


def test_static_export(tmp_path):
    model = small()
    path = export_onnx(model, tmp_path / "static.onnx", static=(20, 28))
    proto = onnx.load(str(path))
    dims = [d.dim_value or d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 20, 28]
    image = photo(20, 28, batch=3) * 255
    assert rel_error(run_onnx(path, image), reference64(model, image)) < 1e-4
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run_onnx(path, photo(21, 28) * 255)


def test_names_docs_and_metadata(tmp_path):
    model = small("a", 3, rgb_mean=(0.1, 0.2, 0.3), res_scale=0.5)
    path = export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    (lr,), (sr,) = proto.graph.input, proto.graph.output
    assert (lr.name, sr.name) == ("lr", "sr")
    assert [d.dim_param or d.dim_value for d in lr.type.tensor_type.shape.dim] == ["batch", 3, "height", "width"]
    assert "RGB, NCHW" in lr.doc_string and "[0, 255]" in lr.doc_string and "3*height" in sr.doc_string
    props = export.metadata(proto)
    assert WDSRConfig.from_dict(json.loads(props["wdsr_fast.config"])) == model.config
    assert (props["architecture"], props["scale"], props["rgb_range"]) == ("WDSR-A", "3", "255")


def test_exports_a_fast_model_on_its_own_weights(tmp_path):
    model = small()
    fast = wdsr_fast.FastWDSR.from_reference(model).eval()
    path = export_onnx(fast, tmp_path / "fast.onnx")
    image = photo(23, 16) * 255
    assert rel_error(run_onnx(path, image), reference64(model, image)) < 1e-4


def test_a_failing_check_replaces_nothing(tmp_path, monkeypatch):
    """A deliberate bug (one bias off in the exported graph) fails the check; the old file stays."""
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the user's previous file")
    folded_copy = export.folded_copy

    def broken_copy(model):
        network = folded_copy(model)
        with torch.no_grad():
            network.tail[0].bias[0] += 0.05
        return network

    monkeypatch.setattr(export, "folded_copy", broken_copy)
    with pytest.raises(ExportError, match=r"relative error .*\(tolerance 1e-04\); nothing was replaced"):
        export_onnx(small(), target)
    assert target.read_bytes() == b"the user's previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="opset must be from 11"):
        export_onnx(small(), tmp_path / "m.onnx", opset=9)
    with pytest.raises(ValueError, match="static"):
        export_onnx(small(), tmp_path / "m.onnx", static=(0, 8))
    with pytest.raises(TypeError, match="WDSR"):
        export_onnx(torch.nn.Conv2d(3, 3, 3), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_missing_extra_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"wdsr-fast\[onnx\]"):
        export_onnx(small(), tmp_path / "m.onnx")


def test_command(tmp_path, capsys):
    weights = tmp_path / "2x_WDSR-B_8x2.safetensors"
    wdsr_fast.save_model(small(), weights)
    out = tmp_path / "m.onnx"
    assert main(["export", str(weights), "-o", str(out), "--static", "16x24", "--opset", "14"]) == 0
    assert "WDSR-B x2" in capsys.readouterr().out
    assert [d.dim_value for d in onnx.load(str(out)).graph.output[0].type.tensor_type.shape.dim][1:] == [3, 32, 48]
    image = np.random.default_rng(0).random((1, 3, 16, 24), dtype=np.float32) * 255
    assert run_onnx(out, torch.from_numpy(image)).shape == (1, 3, 32, 48)


def test_command_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"^error: .*missing\.pth: no such checkpoint file$"):
        main(["export", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "m.onnx")])
    with pytest.raises(SystemExit) as exc:
        main(["export", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "m.onnx"), "--static", "16by24"])
    assert exc.value.code == 2 and "HEIGHTxWIDTH" in capsys.readouterr().err
    weights = wdsr_fast.save_model(small(), tmp_path / "m.safetensors")
    with pytest.raises(SystemExit, match=r"^error: opset must be from 11 .* to 20 .*, got 99$"):
        main(["export", str(weights), "-o", str(tmp_path / "m.onnx"), "--opset", "99"])
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(SystemExit, match=r"^error: .*folder\.onnx"):
        main(["export", str(weights), "-o", str(tmp_path / "folder.onnx")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.onnx", "m.safetensors"]


def test_command_never_writes_over_its_input(tmp_path):
    """`export w.safetensors -o w.safetensors` once replaced the user's weights with ONNX bytes (exit 0)."""
    weights = wdsr_fast.save_model(small(), tmp_path / "w.safetensors")
    before = weights.read_bytes()
    for extra in ([], ["--overwrite", "--force-suffix"]):
        with pytest.raises(SystemExit, match=r"^error: -o .*w\.safetensors is the input checkpoint"):
            main(["export", str(weights), "-o", str(weights), *extra])
    (tmp_path / "sub").mkdir()
    roundabout = tmp_path / "sub" / ".." / "w.safetensors"  # the same file by another name
    with pytest.raises(SystemExit, match="is the input checkpoint"):
        main(["export", str(weights), "-o", str(roundabout), "--overwrite", "--force-suffix"])
    (tmp_path / "link.onnx").symlink_to(weights)
    with pytest.raises(SystemExit, match="is the input checkpoint"):
        main(["export", str(weights), "-o", str(tmp_path / "link.onnx"), "--overwrite"])
    assert weights.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.onnx", "sub", "w.safetensors"]


def test_command_wants_an_onnx_suffix_unless_forced(tmp_path, capsys):
    weights = wdsr_fast.save_model(small(), tmp_path / "w.safetensors")
    with pytest.raises(SystemExit, match=r"^error: -o .*model\.pth: not an \.onnx file name .*--force-suffix"):
        main(["export", str(weights), "-o", str(tmp_path / "model.pth")])
    assert not (tmp_path / "model.pth").exists()
    assert main(["export", str(weights), "-o", str(tmp_path / "model.bin"), "--force-suffix"]) == 0
    assert onnx.load(str(tmp_path / "model.bin")).graph.input[0].name == "lr"
    assert main(["export", str(weights), "-o", str(tmp_path / "UPPER.ONNX")]) == 0
    capsys.readouterr()


def test_command_keeps_an_existing_file_unless_overwrite(tmp_path, capsys):
    weights = wdsr_fast.save_model(small(), tmp_path / "w.safetensors")
    target = tmp_path / "m.onnx"
    target.write_bytes(b"the user's previous file")
    with pytest.raises(SystemExit, match=r"^error: .*m\.onnx exists \(--overwrite replaces it\)$"):
        main(["export", str(weights), "-o", str(target)])
    assert target.read_bytes() == b"the user's previous file"
    with pytest.raises(ExportError, match=r"m\.onnx exists; nothing was written \(replace=True replaces it\)"):
        export_onnx(small(), target, replace=False)
    assert target.read_bytes() == b"the user's previous file"
    assert main(["export", str(weights), "-o", str(target), "--overwrite"]) == 0
    assert onnx.load(str(target)).graph.output[0].name == "sr"
    assert export_onnx(small(), tmp_path / "new.onnx", replace=False).is_file()
    capsys.readouterr()


def test_errors_name_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ExportError) as exc:
        export_onnx(small(), tmp_path / "folder.onnx")
    assert str(exc.value).startswith(f"{tmp_path / 'folder.onnx'}: ") and ".tmp" not in str(exc.value)
    weights = wdsr_fast.save_model(small(), tmp_path / "w.safetensors")
    with pytest.raises(SystemExit, match=r"^error: .*folder\.onnx") as exc:
        main(["export", str(weights), "-o", str(tmp_path / "folder.onnx"), "--overwrite"])
    assert ".tmp" not in str(exc.value)

    def failing_session(path, providers):  # what ONNX Runtime says about a file it cannot load
        raise RuntimeError(f"[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from {path} failed")

    monkeypatch.setattr(ort, "InferenceSession", failing_session)
    target = tmp_path / "m.onnx"
    with pytest.raises(SystemExit, match=r"^error: .*m\.onnx: ONNX Runtime cannot load") as exc:
        main(["export", str(weights), "-o", str(target)])
    assert ".tmp" not in str(exc.value) and f"Load model from {target} failed" in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.onnx", "w.safetensors"]
