"""``wdsr-fast upscale --ray`` and ``upscale_on_ray`` on a local Ray (one per module, 2 CPUs): the plain command's
files byte for byte, a worker killed mid-run, a corrupt file among good ones, a re-run that redoes nothing, and
one line when Ray is not installed."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import randomise
from PIL import Image

from wdsr_fast import WDSR, save_model
from wdsr_fast.cli import main
from wdsr_fast.inference.cluster import DIE_ONCE_ENV, RAY_MISSING, upscale_on_ray

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'wdsr-fast[ray]')")
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved) if p)  # the workers import this tree
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "x2.safetensors"
    save_model(randomise(WDSR(variant="b", scale=2, n_feats=8, n_resblocks=2), seed=3), path)
    return path


@pytest.fixture()
def photos(tmp_path):
    """Real photos in several modes: RGB PNG, JPEG with EXIF, gray, RGBA with a soft alpha, 16-bit RGB PNG."""
    import cv2
    from matplotlib import cbook
    from skimage import data

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(data.astronaut()[100:131, 180:217]).save(folder / "astronaut.png")
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    Image.fromarray(data.chelsea()[50:79, 100:123]).save(folder / "chelsea.jpg", quality=95, exif=exif.tobytes())
    Image.fromarray(data.camera()[200:229, 240:263]).save(folder / "camera.png")
    with Image.open(cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False)) as img:
        Image.fromarray(np.asarray(img.convert("RGBA"))[70:110, 64:98].copy(), "RGBA").save(folder / "sprite.png")
    deep = (data.coffee()[100:125, 200:230].astype(np.uint16) * 257 + 77).astype(np.uint16)
    cv2.imwrite(str(folder / "coffee16.png"), np.ascontiguousarray(deep[..., ::-1]))
    Image.fromarray(data.rocket()[100:126, 200:221]).save(folder / "rocket.png")
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_without_ray_one_line_and_status_2(tmp_path, photos, weights, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["upscale", str(photos), "-o", str(tmp_path / "out"), "--weights", str(weights), "--ray"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {RAY_MISSING}\n"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_same_files_as_the_plain_command(tmp_path, photos, weights, local_ray, capsys, monkeypatch):
    """Names, formats, 16-bit, alpha, EXIF: byte for byte, with tiles on the workers as on one machine; relative
    paths mean on the workers what they mean for the command."""
    monkeypatch.chdir(tmp_path)
    common = ["in", "--weights", str(weights), "--tile", "16"]
    assert main(["upscale", *common, "-o", "plain"]) == 0
    assert main(["upscale", *common, "-o", "ray", "--ray"]) == 0
    plain, on_ray = contents(tmp_path / "plain"), contents(tmp_path / "ray")
    assert len(plain) == 6 and plain.keys() == on_ray.keys()
    assert [name for name in plain if plain[name] != on_ray[name]] == []
    captured = capsys.readouterr()
    assert "6 of 6 images upscaled x2 into" in captured.out.splitlines()[-1]
    assert "worker " in captured.err and "6 done, 0 skipped, 0 failed" in captured.err
    assert "in/astronaut.png -> ray/astronaut_x2.png (RGB 8-bit 37x31 -> 74x62)" in captured.err


def test_a_corrupt_file_is_named_and_the_others_are_done(tmp_path, photos, weights, local_ray, capsys):
    (photos / "broken.png").write_bytes(Image.open(photos / "rocket.png").tobytes()[:500])  # no PNG at all
    out = tmp_path / "out"
    assert main(["upscale", str(photos), "-o", str(out), "--weights", str(weights), "--ray"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == f"6 of 7 images upscaled x2 into {out}; 1 failed"
    assert f"failed (1): {photos / 'broken.png'}: not an image file" in captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}_x2.png" for p in photos.iterdir()
                                                           if p.name != "broken.png")

    # run again: nothing redone (the files untouched), the corrupt file named again
    times = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["upscale", str(photos), "-o", str(out), "--weights", str(weights), "--ray"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == (f"0 of 7 images upscaled x2 into {out}; 6 skipped (output exists); "
                                             f"1 failed")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == times


def test_a_rerun_of_a_complete_batch_redoes_nothing(tmp_path, photos, weights, local_ray):
    out = tmp_path / "out"
    first = upscale_on_ray([photos], out, weights=weights, progress=False, log=lambda line: None)
    assert first.count("done") == 6 and first.status == 0
    times = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = upscale_on_ray([photos], out, weights=weights, progress=False, log=lambda line: None)
    assert again.count("skipped") == 6 and again.count("done") == 0 and again.workers == {}  # no worker needed
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == times


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, photos, weights, local_ray):
    """The only worker's process exits halfway through its first call (after writing a file): Ray restarts it and
    runs the call again; every output is complete and the same as the plain command's."""
    marker = tmp_path / "died"
    lines: list[str] = []
    report = upscale_on_ray([photos], tmp_path / "ray", weights=weights, workers=1, progress=False,
                            log=lines.append, runtime_env={"env_vars": {DIE_ONCE_ENV: str(marker)}})
    assert marker.exists(), "the worker did not die"
    assert report.status == 0 and report.count("done") + report.count("skipped") == 6, lines
    assert len(report.workers) >= 1
    assert main(["upscale", str(photos), "-o", str(tmp_path / "plain"), "--weights", str(weights)]) == 0
    assert contents(tmp_path / "ray") == contents(tmp_path / "plain")  # no partial or temporary file either


def test_a_call_whose_worker_dies_on_every_try_fails_its_files_only(tmp_path, photos, weights, local_ray):
    """A call that kills its worker on both of its tries (task_retries=1): its files are failed with the reason,
    Ray restarts the actor and every other file is done."""
    died = f"{tmp_path / 'died'}:2"
    report = upscale_on_ray([photos], tmp_path / "out", weights=weights, workers=1, task_retries=1, progress=False,
                            log=lambda line: None, runtime_env={"env_vars": {DIE_ONCE_ENV: died}})
    failed = report.failed
    assert report.status == 1 and 1 <= len(failed) < 6 and report.count("done") == 6 - len(failed)
    assert all("its worker died on every try (2): " in o.line for o in failed), [o.line for o in failed]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
