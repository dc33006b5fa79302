"""Checkpoint round trips, the authors' layouts, config inference, and every bad checkpoint."""
import os
import re

import pytest
import torch
from helpers import randomise, small_wdsr, ychfan_forward, ychfan_state

import wdsr_fast
from wdsr_fast import WDSR, load_model, preset, save_model
from wdsr_fast.model.checkpoint import CheckpointError


def same_output(a, b, image=None):
    image = torch.rand(1, 3, 9, 11) * a.config.rgb_range if image is None else image
    with torch.no_grad():
        return torch.equal(a(image), b(image))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt"])
@pytest.mark.parametrize("variant", ["a", "b"])
def test_round_trip(tmp_path, suffix, variant):
    model = small_wdsr(variant, scale=3, res_scale=0.5, rgb_mean=(0.1, 0.2, 0.3))
    path = save_model(model, tmp_path / f"m{suffix}")
    loaded = load_model(path)
    assert loaded.config == model.config
    assert same_output(model, loaded)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temp file


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model", "model_state_dict", "params", "params_ema"])
def test_wrapped_and_prefixed_state_dicts(tmp_path, wrapper):
    model = small_wdsr("b", scale=4)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, tmp_path / "c.pth")
    loaded = load_model(tmp_path / "c.pth")
    assert (loaded.config.variant, loaded.config.scale, loaded.config.n_feats) == ("b", 4, 8)
    assert loaded.config.low_rank_feats == 6 and loaded.config.wide_feats == 48
    assert same_output(model, loaded)


def test_parametrizations_api_keys():
    model = small_wdsr("a")
    modern = WDSR(variant="a", scale=2, n_feats=8, n_resblocks=2, block_feats=16)
    state = {}
    for key, value in model.state_dict().items():  # the keys torch.nn.utils.parametrizations.weight_norm writes
        key = key.replace(".weight_g", ".parametrizations.weight.original0")
        state[key.replace(".weight_v", ".parametrizations.weight.original1")] = value
    modern.load_state_dict(state)
    assert same_output(model, modern)


def test_plain_weight_keys():
    model = small_wdsr("b")
    plain = wdsr_fast.folded_copy(model).state_dict()
    loaded = WDSR(variant="b", scale=2, n_feats=8, n_resblocks=2)
    loaded.load_state_dict(plain)
    image = torch.rand(1, 3, 9, 11) * 255
    with torch.no_grad():
        assert (loaded(image) - model(image)).abs().max() < 1e-3


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_ychfan_checkpoint(tmp_path, scale):
    source = randomise(preset("ychfan-small", scale, n_feats=8, block_feats=32, n_resblocks=3))
    state = ychfan_state(source)
    torch.save({"model_state_dict": state, "optimizer_state_dict": {}, "epoch": 30}, tmp_path / "epoch_30.pth")
    loaded = load_model(tmp_path / "epoch_30.pth")
    cfg = loaded.config
    assert (cfg.variant, cfg.scale, cfg.n_resblocks, cfg.block_feats) == ("a", scale, 3, 32)
    assert (cfg.rgb_range, cfg.rgb_mean, cfg.pixel_norm_scale, cfg.res_scale) == (1.0, (0.5,) * 3, 1.0, 1.0)
    image = torch.rand(2, 3, 10, 7)
    with torch.no_grad():
        expected = ychfan_forward(state, image, 3, scale)
        assert (loaded(image) - expected).abs().max() < 1e-5


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_model(tmp_path / "absent.pth")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_truncated_file(tmp_path, suffix):
    path = save_model(small_wdsr(), tmp_path / f"m{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_model(path)


def test_mismatched_config(tmp_path):
    path = save_model(small_wdsr("b", scale=2), tmp_path / "m.pth")
    obj = torch.load(path, weights_only=True)
    obj["config"]["scale"] = 3
    torch.save(obj, path)
    expected = r"x3.*tail.0.bias has shape \[12\], the config expects \[27\]"
    with pytest.raises(CheckpointError, match=expected):
        load_model(path)


def test_missing_tensor(tmp_path):
    state = small_wdsr("b").state_dict()
    del state["body.1.body.3.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="missing tensors body.1.body.3.bias; unexpected tensors extra.weight"):
        load_model(tmp_path / "m.pth")


def test_not_a_checkpoint(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="dict"):
        load_model(tmp_path / "list.pth")
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="configuration"):
        load_model(tmp_path / "other.pth")


def test_mismatched_state_dict_into_module():
    with pytest.raises(RuntimeError, match="size mismatch"):
        WDSR(scale=3, n_feats=8, n_resblocks=2).load_state_dict(small_wdsr("b", scale=2).state_dict())


def test_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="format"):
        save_model(small_wdsr(), tmp_path / "m.bin")


@pytest.mark.parametrize("n_feats,expansion,low_rank", [(10, 4, 0.5), (12, 3, 0.8), (7, 2, 1.0)])
def test_inferred_config_rebuilds_the_same_shapes(tmp_path, n_feats, expansion, low_rank):
    model = small_wdsr("b", n_feats=n_feats, expansion=expansion, low_rank=low_rank)
    torch.save(model.state_dict(), tmp_path / "bare.pth")  # no config stored: everything from the shapes
    cfg = load_model(tmp_path / "bare.pth").config
    assert (cfg.n_feats, cfg.expansion, cfg.low_rank_feats) == (n_feats, expansion, model.config.low_rank_feats)
    assert (cfg.low_rank == 0.8) == (int(n_feats * 0.8) == model.config.low_rank_feats)


@pytest.mark.parametrize("name", ["notes.pth", "notes.pt", "notes.safetensors"])
@pytest.mark.parametrize("content", [b"hello, this is not a checkpoint\n", b"", b"\x00" * 64])
def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, name, content):
    from wdsr_fast.model.checkpoint import read_checkpoint

    path = tmp_path / name
    path.write_bytes(content)
    for read in (load_model, read_checkpoint):
        with pytest.raises(CheckpointError) as exc:
            read(path)
        assert str(exc.value).startswith(f"{path}: not a checkpoint"), str(exc.value)
        assert "\n" not in str(exc.value) and "KeyError" not in str(exc.value)


class Payload:
    """What a malicious pickle carries: an object whose unpickling would run code."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_a_pickle_with_objects_is_refused_for_safety(tmp_path, capfd):
    from wdsr_fast.model.checkpoint import read_checkpoint

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": small_wdsr().state_dict(), "payload": Payload()}, path)
    for read in (load_model, read_checkpoint):
        with pytest.raises(CheckpointError) as exc:
            read(path)
        message = str(exc.value)
        assert message.startswith(f"{path}: holds objects other than tensors ("), message
        assert "system" in message, message  # names what it holds (posix.system or nt.system)
        assert "refused for safety" in message and "\n" not in message
        assert "weights_only" not in message and "False" not in message  # never the advice to load it unsafely
    assert "must never run" not in capfd.readouterr().out


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="a folder, not a checkpoint file"):
        load_model(tmp_path)
