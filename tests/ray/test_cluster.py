"""``wdsr-fast upscale --ray`` and ``upscale_on_ray`` on a local Ray (one per module, 2 CPUs): the plain command's
files (images byte for byte, videos to their bitstreams), a worker killed mid-run, corrupt files among good ones,
a re-run that redoes nothing, and one line when Ray is not installed; without Ray: how calls and actors are
planned, and what --ray's optional address takes."""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import randomise
from PIL import Image

from wdsr_fast import WDSR, save_model
from wdsr_fast.cli import main
from wdsr_fast.cli.upscale_ray import LOCAL, split_address
from wdsr_fast.inference import cluster
from wdsr_fast.inference.cluster import DIE_ONCE_ENV, RAY_MISSING, ClusterError, plan_actors, upscale_on_ray
from wdsr_fast.inference.files import Job

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


def streams(path: Path) -> list:
    """Each stream's properties and packets (time stamps and bytes), and the decoded frames of the video."""
    import av

    with av.open(str(path)) as container:
        found = [(s.type, s.codec_context.name, s.time_base, getattr(s.codec_context, "width", None),
                  getattr(s.codec_context, "pix_fmt", None), dict(s.metadata)) for s in container.streams]
        packets = [(p.stream.index, p.pts, p.dts, p.duration, bytes(p)) for p in container.demux() if p.size]
    with av.open(str(path)) as container:
        frames = [(f.pts, f.to_ndarray(format="rgb24").tobytes()) for f in container.decode(video=0)]
    return [found, packets, frames]


def test_without_ray_one_line_and_status_2(tmp_path, photos, weights, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["upscale", str(photos), "-o", str(tmp_path / "out"), "--weights", str(weights), "--ray"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {RAY_MISSING}\n"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_same_files_as_the_plain_command(tmp_path, photos, clips, weights, local_ray, capsys, monkeypatch):
    """A folder of images and videos (one video a call). Images: names, formats, 16-bit, alpha, EXIF byte for
    byte, with tiles on the workers as on one machine. Videos: the MP4 byte for byte; the Matroska file's
    streams, packets and decoded frames (its header holds UIDs that FFmpeg draws at random on every run, plain
    runs too). Relative paths mean on the workers what they mean for the command; --ray before the inputs."""
    shutil.copy(clips["h264"], photos / "h264.mp4")
    shutil.copy(clips["vfr"], photos / "vfr.mkv")
    monkeypatch.chdir(tmp_path)
    common = ["--weights", str(weights), "--tile", "16"]
    assert main(["upscale", "in", *common, "-o", "plain"]) == 0
    assert main(["upscale", "--ray", "in", *common, "-o", "ray"]) == 0
    plain, on_ray = contents(tmp_path / "plain"), contents(tmp_path / "ray")
    assert len(plain) == 8 and plain.keys() == on_ray.keys()
    assert [name for name in plain if plain[name] != on_ray[name]] == ["vfr_x2.mkv"]
    assert streams(tmp_path / "plain" / "vfr_x2.mkv") == streams(tmp_path / "ray" / "vfr_x2.mkv")
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-2].startswith("6 of 6 images upscaled x2 into ray")
    assert captured.out.splitlines()[-1].startswith("2 of 2 videos upscaled x2 into ray (22 frames, ")
    assert "worker " in captured.err and "8 done, 0 skipped, 0 failed" in captured.err
    assert "images/s, " in captured.err and "video frames/s" in captured.err
    assert "in/astronaut.png -> ray/astronaut_x2.png (RGB 8-bit 37x31 -> 74x62)" in captured.err
    assert ("in/h264.mp4 -> ray/h264_x2.mp4 (H.264 yuv420p 64x48, 0.50 s, 24 fps -> libx264 yuv420p 128x96 crf 17, "
            "12 frames; audio aac (fra) copied)") in captured.err


def test_corrupt_files_are_named_and_the_others_are_done(tmp_path, photos, weights, local_ray, capsys):
    (photos / "broken.png").write_bytes(Image.open(photos / "rocket.png").tobytes()[:500])  # no PNG at all
    (photos / "broken.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + bytes(500))  # an MP4 with nothing in it
    out = tmp_path / "out"
    assert main(["upscale", str(photos), "-o", str(out), "--weights", str(weights), "--ray"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-2:] == [f"6 of 7 images upscaled x2 into {out}; 1 failed",
                                              f"0 of 1 videos upscaled x2 into {out}; 1 failed"]
    failed = captured.err.splitlines()[-1]
    assert failed.startswith(f"failed (2): {photos / 'broken.png'}: not an image file")
    assert f"; {photos / 'broken.mp4'}: not a video file that can be read" in failed
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}_x2.png" for p in photos.iterdir()
                                                           if p.stem != "broken")

    # run again: nothing redone (the files untouched), the corrupt files named again
    times = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["upscale", str(photos), "-o", str(out), "--weights", str(weights), "--ray"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-2] == (f"0 of 7 images upscaled x2 into {out}; 6 skipped (output exists); "
                                             f"1 failed")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == times


def test_a_rerun_of_a_complete_batch_redoes_nothing(tmp_path, photos, clips, weights, local_ray):
    shutil.copy(clips["h264"], photos / "h264.mp4")
    out = tmp_path / "out"
    first = upscale_on_ray([photos], out, weights=weights, progress=False, log=lambda line: None)
    assert first.count("done") == 7 and first.status == 0
    times = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = upscale_on_ray([photos], out, weights=weights, progress=False, log=lambda line: None)
    assert again.count("skipped") == 7 and again.count("done") == 0 and again.workers == {}  # no worker needed
    assert again.summary().splitlines()[-1] == f"0 of 1 videos upscaled x2 into {out}; 1 skipped (output exists)"
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


# -- without Ray: the plans -----------------------------------------------------------------------------------

def test_one_video_a_call_the_largest_first(tmp_path):
    sizes = {"a.png": 10, "b.mp4": 100, "c.png": 10, "d.mkv": 300, "e.png": 10, "f.png": 10}
    jobs = []
    for index, (name, size) in enumerate(sizes.items()):
        (tmp_path / name).write_bytes(bytes(size))
        kind = "video" if name.endswith(("mp4", "mkv")) else "image"
        jobs.append((index, Job(tmp_path / name, tmp_path / f"out_{name}", "PNG", kind=kind)))
    groups = cluster.batches(jobs, workers=1)
    names = [[job.source.name for _, job in group] for group in groups]
    assert names == [["d.mkv"], ["b.mp4"], ["a.png"], ["c.png"], ["e.png"], ["f.png"]]  # 4 images: 1 a call
    images = [item for item in jobs if item[1].kind == "image"] * 20
    assert [len(group) for group in cluster.batches(images, workers=1)] == [16] * 5  # 80 images: 16 a call
    assert [len(group) for group in cluster.batches(images, workers=4)] == [5] * 16  # 4 calls a worker


@pytest.mark.parametrize(("nodes", "asked", "expected"), [
    ([{"CPU": 16, "GPU": 2}, {"CPU": 16, "GPU": 2}], {"half": True},
     ("cuda", 4, 1, {"num_gpus": 1, "num_cpus": 1})),  # one actor per GPU, 1 CPU each
    ([{"CPU": 16, "GPU": 1}, {"CPU": 64}], {}, ("cuda", 1, 1, {"num_gpus": 1, "num_cpus": 1})),  # GPUs only
    ([{"CPU": 16, "GPU": 1}, {"CPU": 64}], {"device": "cpu"}, ("cpu", 20, 4, {"num_cpus": 4})),
    ([{"CPU": 2}], {}, ("cpu", 1, 2, {"num_cpus": 2})),  # this machine
    ([{"CPU": 3}, {"CPU": 3}], {"threads": 2}, ("cpu", 2, 2, {"num_cpus": 2})),  # 1 a node: 6 // 2 would not fit
    ([{"CPU": 8}, {"CPU": 8}], {"workers": 3}, ("cpu", 3, 4, {"num_cpus": 4})),
    ([{"CPU": 8}, {"CPU": 8}], {"calls": 1}, ("cpu", 1, 4, {"num_cpus": 4})),  # never more actors than calls
])
def test_actors_one_per_gpu_else_cpu_actors_that_fit(nodes, asked, expected):
    plan = plan_actors(nodes, **{"calls": 100, **asked})
    assert (plan.device, plan.count, plan.threads, plan.options) == expected


@pytest.mark.parametrize(("nodes", "asked", "message"), [
    ([{"CPU": 8}], {"half": True}, "half precision on Ray needs GPU workers"),
    ([{"CPU": 8}], {"device": "cuda"}, "--device cuda: the Ray cluster has no GPU"),
    ([{"CPU": 2}, {"CPU": 4}], {"threads": 8}, "--threads 8: no node of the Ray cluster has 8 CPUs (the largest has "
                                                "4)"),
])
def test_actors_the_cluster_cannot_run(nodes, asked, message):
    with pytest.raises(ClusterError, match=re.escape(message)) as error:
        plan_actors(nodes, **asked)
    assert error.value.status == 2


# -- without Ray: what --ray takes ----------------------------------------------------------------------------

def test_split_address(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.png").touch()
    (tmp_path / "shots").mkdir()
    rest = [Path("b.png")]
    assert split_address(LOCAL, rest) == (LOCAL, rest)
    assert split_address("in.png", rest) == (LOCAL, [Path("in.png"), *rest])
    assert split_address("shots", []) == (LOCAL, [Path("shots")])
    for address in ("auto", "ray://head:10001", "ray://10.0.0.5:10001", "head.example.org:6379", "[::1]:6379"):
        assert split_address(address, rest) == (address, rest)
    for bad in ("missing.png", "http://head:8265", "head:", "ray:/head"):
        with pytest.raises(ValueError, match=f"--ray {bad}: not a Ray address"):
            split_address(bad, rest)


@pytest.mark.parametrize(("argv", "address", "inputs"), [
    (["--ray", "in.png", "-o", "out"], None, ["in.png"]),
    (["in.png", "-o", "out", "--ray"], None, ["in.png"]),
    (["--ray", "local", "in.png", "-o", "out"], None, ["in.png"]),
    (["--ray", "auto", "in.png", "shots", "-o", "out"], "auto", ["in.png", "shots"]),
    (["--ray", "ray://head:10001", "in.png", "-o", "out"], "ray://head:10001", ["in.png"]),
    (["in.png", "--ray=head:6379", "-o", "out"], "head:6379", ["in.png"]),
])
def test_the_command_gives_upscale_on_ray_the_address_and_inputs(tmp_path, monkeypatch, argv, address, inputs):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.png").touch()
    (tmp_path / "shots").mkdir()
    seen = {}

    def fake(given, out, **options):
        seen.update(inputs=[str(p) for p in given], out=str(out), address=options["address"])
        return cluster.Report([], 2, Path(out))

    monkeypatch.setattr(cluster, "upscale_on_ray", fake)
    assert main(["upscale", *argv]) == 0
    assert seen == {"inputs": inputs, "out": "out", "address": address}


@pytest.mark.parametrize(("argv", "line"), [
    (["--ray", "bogus", "in.png", "-o", "out"],
     "error: --ray bogus: not a Ray address (local, auto, ray://HOST:PORT or HOST:PORT), nor a file or folder that "
     "exists\n"),
    (["--ray", "auto", "-o", "out"], "error: no INPUT given: name the image and video files or folders to upscale\n"),
    (["-o", "out"], "error: no INPUT given: name the image and video files or folders to upscale\n"),
])
def test_a_bad_address_or_no_input_is_one_line(tmp_path, monkeypatch, capsys, argv, line):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.png").touch()
    assert main(["upscale", *argv]) == 2
    assert capsys.readouterr().err == line
    assert not (tmp_path / "out").exists()
