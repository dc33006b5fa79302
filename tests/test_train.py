"""Datasets, training (exact resume, kill safety, DDP on CPU), and the eval command."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from wdsr_fast.cli import main
from wdsr_fast.data.datasets import PatchDataset, find_pairs, load_pair
from wdsr_fast.data.imresize import imresize
from wdsr_fast.train import STATE_FILE, Run, TrainConfig, load_config

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
    lr, hr = dataset[5]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16)
    assert torch.equal(dataset[5][0], lr)
    # aligned: downscaling the HR patch gives (nearly) the LR patch, away from the patch border
    down = imresize(hr.permute(1, 2, 0).numpy().astype(np.float64), 0.5)
    assert np.abs(down[2:-2, 2:-2] - lr.permute(1, 2, 0).numpy()[2:-2, 2:-2]).mean() < 8
    dataset.epoch = 1
    assert not torch.equal(dataset[5][0], lr)


def test_image_smaller_than_patch(photos):
    dataset = PatchDataset(find_pairs(photos / "train", 2), 2, patch=40)
    with pytest.raises(ValueError, match="smaller than the 40x40 patch"):
        dataset[0]


# -- training ------------------------------------------------------------------------------------------

def test_train_writes_weights_log_and_state(photos, tmp_path):
    cfg = config(photos, tmp_path / "run", val_data=str(photos / "val"), val_every=3)
    final = Run(cfg).run()
    from wdsr_fast import load_model

    assert load_model(final).config.n_feats == 8
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,val_psnr_y,val_ssim_y" and len(log) == 5  # steps 2, 3 (val), 4, 6
    assert (tmp_path / "run" / STATE_FILE).is_file()


def test_resume_is_exact(photos, tmp_path):
    straight = Run(config(photos, tmp_path / "a"))
    straight.run()
    Run(config(photos, tmp_path / "b", steps=3)).run()  # stops after the step-3 checkpoint
    resumed = Run(config(photos, tmp_path / "b"), resume=True)
    assert resumed.step == 3
    resumed.run()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.optimizer.state_dict()["state"][0]["step"] == 6


def test_resume_errors(photos, tmp_path):
    with pytest.raises(ValueError, match="no train_state.pt"):
        Run(config(photos, tmp_path / "none"), resume=True)
    Run(config(photos, tmp_path / "c", steps=3)).run()
    with pytest.raises(ValueError, match="different model"):
        Run(config(photos, tmp_path / "c", model={"n_feats": 16, "n_resblocks": 1}), resume=True)


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
    run = Run(cfg, resume=True)
    assert run.step == saved["step"]
    run.run()
    assert torch.load(out / STATE_FILE, weights_only=True)["step"] == saved["step"] + 2


def test_ddp_two_processes_on_cpu(photos, tmp_path):
    """torchrun --nproc_per_node 2 with gloo: both ranks train, rank 0 writes the weights."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29731",
         "-m", "wdsr_fast", "train", "--data", str(photos / "train"), "--out", str(out), "--model",
         '{"n_feats": 8, "n_resblocks": 1}', "--patch", "8", "--batch", "4", "--patches-per-image", "8",
         "--steps", "4", "--workers", "0", "--checkpoint-every", "2", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model.safetensors").is_file()
    assert torch.load(out / STATE_FILE, weights_only=True)["step"] == 4


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


# -- eval ----------------------------------------------------------------------------------------------

def test_eval_command(photos, tmp_path, capsys):
    weights = Run(config(photos, tmp_path / "e", steps=2)).run()
    assert main(["eval", "--weights", str(weights), "--data", str(photos / "val"), "--scale", "2", "--csv",
                 str(tmp_path / "rows.csv")]) == 0
    out = capsys.readouterr().out
    assert "astronaut" in out and "bicubic" in out and "MEAN" in out
    assert (tmp_path / "rows.csv").read_text().startswith("image,method,psnr_y,ssim_y,psnr_rgb")
    with pytest.raises(SystemExit, match="x2 model"):
        main(["eval", "--weights", str(weights), "--data", str(photos / "val"), "--scale", "3"])
