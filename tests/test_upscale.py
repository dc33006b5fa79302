"""The upscale command end to end on real photos, tiling exactness, and every bad input."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from test_model import randomise

from wdsr_fast import WDSR, FastWDSR, save_model
from wdsr_fast.cli import main
from wdsr_fast.infer import tensor_to_uint8, upscale_tensor


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "x2.safetensors"
    save_model(randomise(WDSR(variant="b", scale=2, n_feats=8, n_resblocks=2), seed=3), path)
    return path


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(data.astronaut()[100:131, 180:217]).save(folder / "astronaut.png")
    Image.fromarray(data.chelsea()[50:79, 100:123]).save(folder / "chelsea.jpg", quality=95)
    return folder


def test_upscale_folder(tmp_path, photos, weights, capsys):
    out = tmp_path / "out"
    assert main(["upscale", str(photos), "-o", str(out), "--weights", str(weights), "--scale", "2"]) == 0
    with Image.open(out / "astronaut_x2.png") as img:
        assert img.mode == "RGB" and img.size == (74, 62)
    with Image.open(out / "chelsea_x2.png") as img:
        assert img.size == (46, 58)
    assert "2 of 2 images upscaled" in capsys.readouterr().out


def test_upscale_matches_model(tmp_path, photos, weights):
    """The written PNG is the model's output, clamped and rounded: nothing lost on the way."""
    from wdsr_fast import load_model

    out = tmp_path / "out"
    main(["upscale", str(photos / "astronaut.png"), "-o", str(out), "--weights", str(weights), "--tile", "9"])
    lr = np.asarray(Image.open(photos / "astronaut.png"))
    with torch.no_grad():
        sr = load_model(weights)(torch.from_numpy(lr.copy()).permute(2, 0, 1)[None].float())
    written = np.asarray(Image.open(out / "astronaut_x2.png"))
    assert np.array_equal(written, tensor_to_uint8(sr, 255))


@pytest.mark.parametrize("variant", ["a", "b"])
@pytest.mark.parametrize("tile", [5, 8, 13])
def test_tiled_equals_untiled(variant, tile):
    model = FastWDSR(variant=variant, scale=3, n_feats=8, n_resblocks=2, block_feats=16, backend="torch")
    randomise(model).eval()
    image = torch.rand(2, 3, 17, 22) * 255
    with torch.inference_mode():
        whole = model(image)
        tiled = upscale_tensor(model, image, tile=tile)
    assert (tiled - whole).abs().max() < 1e-3
    assert np.array_equal(tensor_to_uint8(tiled[:1], 255), tensor_to_uint8(whole[:1], 255))


def test_tile_pad_too_small_changes_the_result():
    """The receptive-radius pad is what makes tiling exact: a pad of 0 must show seams (the test can fail)."""
    model = randomise(FastWDSR(variant="b", scale=2, n_feats=8, n_resblocks=2, backend="torch")).eval()
    image = torch.rand(1, 3, 16, 16) * 255
    with torch.inference_mode():
        assert (upscale_tensor(model, image, tile=8, tile_pad=0) - model(image)).abs().max() > 1e-2


def test_one_bad_file_does_not_stop_the_others(tmp_path, photos, weights, capsys):
    (photos / "broken.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(data.camera()[:20, :20]).save(photos / "gray.png")
    Image.fromarray(np.dstack([data.astronaut()[:20, :20], np.full((20, 20), 255, np.uint8)])).save(
        photos / "rgba.png")
    out = tmp_path / "out"
    assert main(["upscale", str(photos), "-o", str(out), "--weights", str(weights)]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_x2.png", "chelsea_x2.png"]
    captured = capsys.readouterr()
    assert "not a readable PNG/JPEG image" in captured.err
    assert "mode is 'L'" in captured.err and "mode is 'RGBA'" in captured.err
    assert "3 failed" in captured.out


def test_image_smaller_than_tile(tmp_path, weights):
    Image.fromarray(data.astronaut()[:3, :2]).save(tmp_path / "tiny.png")
    assert main(["upscale", str(tmp_path / "tiny.png"), "-o", str(tmp_path / "o"), "--weights", str(weights),
                 "--tile", "64"]) == 0
    assert Image.open(tmp_path / "o" / "tiny_x2.png").size == (4, 6)


@pytest.mark.parametrize("argv,message", [
    ([], "no bundled weights"),
    (["--weights", "WEIGHTS", "--scale", "3"], "x2 model"),
    (["--weights", "MISSING"], "no such checkpoint file"),
    (["--weights", "WEIGHTS", "--half", "--device", "cpu"], "--half needs --device cuda"),
])
def test_bad_arguments(tmp_path, photos, weights, argv, message, capsys, monkeypatch):
    monkeypatch.setattr("wdsr_fast.weights.bundled_path", lambda scale: None)
    argv = [str(weights) if a == "WEIGHTS" else str(tmp_path / "missing.pth") if a == "MISSING" else a for a in argv]
    with pytest.raises(SystemExit, match=message):
        main(["upscale", str(photos), "-o", str(tmp_path / "o")] + argv)


def test_no_images(tmp_path, weights):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no PNG/JPEG images"):
        main(["upscale", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), "--weights", str(weights)])


def test_module_entry_point(tmp_path, photos, weights):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "wdsr_fast", "upscale", str(photos / "chelsea.jpg"), "-o",
                             str(tmp_path / "o"), "--weights", str(weights)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "chelsea_x2.png").is_file()


@pytest.mark.parametrize("tile", [None, 4])
def test_empty_image_is_refused(tile):
    """0 px is too small for the network: a clear error, never an empty or missing output."""
    model = WDSR(variant="b", scale=2, n_feats=8, n_resblocks=1).eval()
    with pytest.raises(ValueError, match="empty image"):
        upscale_tensor(model, torch.rand(1, 3, 0, 9), tile=tile)


@pytest.mark.parametrize("kwargs,match", [(dict(tile=0), "tile must be"), (dict(tile=4, tile_pad=-1), "tile_pad")])
def test_bad_tile_arguments(kwargs, match):
    model = WDSR(variant="b", scale=2, n_feats=8, n_resblocks=1).eval()
    with pytest.raises(ValueError, match=match):
        upscale_tensor(model, torch.rand(1, 3, 6, 6), **kwargs)


def test_tile_zero_is_a_usage_error(tmp_path, photos, weights, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["upscale", str(photos), "-o", str(tmp_path / "o"), "--weights", str(weights), "--tile", "0"])
    assert exit_info.value.code == 2 and "must be an integer >= 1" in capsys.readouterr().err


def test_bundled_path(tmp_path, monkeypatch):
    import wdsr_fast.weights as bundled

    monkeypatch.setattr(bundled, "HERE", tmp_path)
    assert bundled.bundled_path(3) is None
    (tmp_path / "wdsr-b-32x16-x3.safetensors").write_bytes(b"")
    assert bundled.bundled_path(3) == tmp_path / "wdsr-b-32x16-x3.safetensors"


def test_bundled_weights_are_the_default(tmp_path, photos, weights, monkeypatch):
    asked = []
    monkeypatch.setattr("wdsr_fast.weights.bundled_path", lambda scale: asked.append(scale) or weights)
    assert main(["upscale", str(photos / "astronaut.png"), "-o", str(tmp_path / "o")]) == 0
    assert asked == [2] and (tmp_path / "o" / "astronaut_x2.png").is_file()


def test_ychfan_checkpoint_as_weights(tmp_path, photos):
    """An authors' ychfan/wdsr epoch_30.pth works as --weights, with its [0, 1] normalisation."""
    from test_checkpoint import ychfan_forward, ychfan_state

    from wdsr_fast import preset

    state = ychfan_state(randomise(preset("ychfan-small", 3, n_feats=8, block_feats=16, n_resblocks=2)))
    torch.save({"model_state_dict": state, "epoch": 30}, tmp_path / "epoch_30.pth")
    out = tmp_path / "o"
    assert main(["upscale", str(photos / "astronaut.png"), "-o", str(out), "--weights", str(tmp_path / "epoch_30.pth"),
                 "--scale", "3", "--tile", "16"]) == 0
    lr = torch.from_numpy(np.asarray(Image.open(photos / "astronaut.png")).copy()).permute(2, 0, 1)[None] / 255.0
    expected = tensor_to_uint8(ychfan_forward(state, lr, 2, 3), 1.0)
    written = np.asarray(Image.open(out / "astronaut_x3.png"))
    assert np.abs(written.astype(int) - expected).max() <= 1 and (written != expected).mean() < 1e-3
