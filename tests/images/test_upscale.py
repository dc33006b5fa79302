"""The upscale command end to end on real photos: every mode and format, names and folders, never destroying a
file, and one line per failed file while the batch goes on."""
import errno
import io
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    astronaut,
    camera,
    deep,
    exif_bytes,
    grace_hopper_path,
    png_file,
    small_model,
    sprite_rgba,
    stored_for,
)
from helpers import randomise, sigint_as_in_a_terminal, ychfan_forward, ychfan_state
from PIL import Image

from wdsr_fast import Upscaler
from wdsr_fast.cli import main
from wdsr_fast.io.images import tensor_to_uint8


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(astronaut()).save(folder / "astronaut.png")
    from skimage import data

    Image.fromarray(data.chelsea()[50:79, 100:123]).save(folder / "chelsea.jpg", quality=95)
    return folder


def upscale(*argv) -> int:
    return main(["upscale", *map(str, argv)])


def bundled_weights(monkeypatch, found) -> None:
    """Make ``found(scale)`` the bundled-weights lookup, wherever the library looks it up."""
    monkeypatch.setattr("wdsr_fast.weights.bundled_path", found)
    monkeypatch.setattr("wdsr_fast.inference.upscaler.bundled_path", found, raising=False)


def test_upscale_folder(tmp_path, photos, weights, capsys):
    out = tmp_path / "out"
    assert upscale(photos, "-o", out, "--weights", weights, "--scale", 2) == 0
    with Image.open(out / "astronaut_x2.png") as img:
        assert img.mode == "RGB" and img.size == (74, 62)
    with Image.open(out / "chelsea_x2.png") as img:
        assert img.size == (46, 58)
    captured = capsys.readouterr()
    assert "2 of 2 images upscaled" in captured.out
    assert f"{photos / 'astronaut.png'} -> {out / 'astronaut_x2.png'} (RGB 8-bit 37x31 -> 74x62)" in captured.err


def test_upscale_matches_model(tmp_path, photos, weights, reference_model):
    """The written PNG is the model's output, clamped and rounded: nothing lost on the way."""
    out = tmp_path / "out"
    upscale(photos / "astronaut.png", "-o", out, "--weights", weights, "--tile", 9)
    lr = np.asarray(Image.open(photos / "astronaut.png"))
    with torch.no_grad():
        sr = reference_model(torch.from_numpy(lr.copy()).permute(2, 0, 1)[None].float())
    assert np.array_equal(np.asarray(Image.open(out / "astronaut_x2.png")), tensor_to_uint8(sr, 255))


def test_every_mode_comes_back_in_its_mode(tmp_path, weights, capsys):
    """RGBA, LA, L, 16-bit gray, palette, CMYK, 16-bit RGB/RGBA PNG and TIFF, and a sideways phone photo."""
    import cv2
    import tifffile

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(sprite_rgba(), "RGBA").save(folder / "rgba.png")
    Image.fromarray(np.dstack([camera(), camera()[::-1]]), "LA").save(folder / "la.png")
    Image.fromarray(camera()).save(folder / "gray.png")
    Image.fromarray(deep(camera())).save(folder / "gray16.png")
    Image.fromarray(astronaut()).quantize(32).save(folder / "palette.png")
    Image.fromarray(astronaut()).convert("CMYK").save(folder / "cmyk.jpg")
    cv2.imwrite(str(folder / "rgb16.png"), np.ascontiguousarray(deep(astronaut())[..., ::-1]))
    tifffile.imwrite(folder / "rgba16.tif", deep(sprite_rgba()), photometric="rgb", extrasamples=["unassalpha"])
    with Image.open(grace_hopper_path()) as img:
        Image.fromarray(stored_for(np.asarray(img)[:60, :50], 6)).save(folder / "phone.jpg", exif=exif_bytes(6))
    out = tmp_path / "out"
    assert upscale(folder, "-o", out, "--weights", weights, "--ext", "same") == 0
    expected = {"rgba_x2.png": ("RGBA", (68, 80)), "la_x2.png": ("LA", (46, 58)), "gray_x2.png": ("L", (46, 58)),
                "gray16_x2.png": ("I;16", (46, 58)), "palette_x2.png": ("RGB", (74, 62)),
                "cmyk_x2.jpg": ("RGB", (74, 62)), "rgb16_x2.png": ("RGB", (74, 62)),
                "rgba16_x2.tif": ("RGBA", (68, 80)), "phone_x2.jpg": ("RGB", (100, 120))}
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, (mode, size) in expected.items():
        with Image.open(out / name) as img:
            assert (img.mode, img.size) == (mode, size), name
            assert img.getexif().get(0x0112) in (None, 1)
    for name in ("rgb16_x2.png", "rgba16_x2.tif"):
        assert cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    log = capsys.readouterr().err
    for said in ("alpha upscaled by bicubic", "gray run as RGB, written back gray", "palette -> RGB",
                 "CMYK without an ICC profile -> RGB", "EXIF orientation 6 applied", "RGB 16-bit 37x31 -> 74x62"):
        assert said in log


def test_one_bad_file_does_not_stop_the_others(tmp_path, photos, weights, capsys):
    (photos / "broken.png").write_bytes(b"\x89PNG not really")
    (photos / "bomb.png").write_bytes(png_file(100_000, 100_000, 8, 2))
    (photos / "short.png").write_bytes(png_file(3000, 3000, 8, 2, b"\0" + bytes(9000)))
    data = (photos / "astronaut.png").read_bytes()
    (photos / "cut.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert upscale(photos, "-o", out, "--weights", weights) == 1
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_x2.png", "chelsea_x2.png"]
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 4 and "Traceback" not in captured.err
    assert any("broken.png: not an image file" in e for e in errors)
    assert any("bomb.png: " in e and "100000" in e for e in errors)
    assert any("short.png: truncated or corrupt" in e for e in errors)
    assert any("cut.png: truncated or corrupt" in e for e in errors)
    assert "2 of 6 images upscaled x2" in captured.out and "4 failed" in captured.out


def unreadable(path, monkeypatch) -> None:
    """Take the read permission away from ``path`` (as root, which reads anyway, refuse to open it)."""
    path.chmod(0)
    if os.geteuid() != 0:
        return
    opens, scans = Image.open, os.scandir

    def open_guarded(fp, *args, **kwargs):
        if str(fp) == str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(fp))
        return opens(fp, *args, **kwargs)

    def scan_guarded(top=".", *args, **kwargs):
        if str(top) == str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(top))
        return scans(top, *args, **kwargs)

    monkeypatch.setattr(Image, "open", open_guarded)
    monkeypatch.setattr(os, "scandir", scan_guarded)


def test_links_to_nowhere_and_missing_inputs_are_one_line_each(tmp_path, photos, weights, capsys, monkeypatch):
    """A symbolic link to itself, one to a missing file, an unreadable file and folder, a folder that does not
    exist: each is named with its reason, in a folder or as an argument, and the others are upscaled."""
    (photos / "loop.png").symlink_to("loop.png")
    (photos / "gone.png").symlink_to("nowhere.png")
    Image.fromarray(camera()).save(photos / "locked.png")
    unreadable(photos / "locked.png", monkeypatch)
    (tmp_path / "closed").mkdir()
    Image.fromarray(camera()).save(tmp_path / "closed" / "hidden_away.png")
    unreadable(tmp_path / "closed", monkeypatch)
    (tmp_path / "self.jpg").symlink_to(tmp_path / "self.jpg")
    out = tmp_path / "out"
    assert upscale(photos, tmp_path / "self.jpg", tmp_path / "no_such_folder", tmp_path / "closed", "-o", out,
                   "--weights", weights) == 1
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_x2.png", "chelsea_x2.png"]
    captured = capsys.readouterr()
    errors = [line.strip() for line in captured.err.splitlines() if "error:" in line]
    assert sorted(errors) == sorted([
        f"error: {photos / 'loop.png'}: a symbolic link loop",
        f"error: {photos / 'gone.png'}: a broken symbolic link (to nowhere.png, which does not exist)",
        f"error: {photos / 'locked.png'}: cannot be read (Permission denied)",
        f"error: {tmp_path / 'self.jpg'}: a symbolic link loop",
        f"error: {tmp_path / 'no_such_folder'}: no such file or folder",
        f"error: {tmp_path / 'closed'}: cannot list this folder (Permission denied)"])
    assert "Traceback" not in captured.err
    assert "2 of 8 images upscaled x2" in captured.out and "6 failed" in captured.out


def test_names_the_system_refuses_are_one_line(tmp_path, photos, weights, capsys):
    long = "x" * 300
    assert upscale(photos / f"{long}.png", photos / "astronaut.png", "-o", tmp_path / "o", "--weights", weights) == 1
    captured = capsys.readouterr()
    assert f"error: {photos / long}.png: cannot be read (File name too long)" in captured.err
    assert "Traceback" not in captured.err and "1 of 2 images upscaled" in captured.out
    with pytest.raises(SystemExit, match=f"cannot write into output folder .*{long}: File name too long"):
        upscale(photos, "-o", tmp_path / long, "--weights", weights)


def test_nothing_but_links_to_nowhere(tmp_path, weights, capsys):
    (tmp_path / "loop.png").symlink_to("loop.png")
    with pytest.raises(SystemExit, match="no images"):
        upscale(tmp_path / "loop.png", tmp_path / "missing", "-o", tmp_path / "o", "--weights", weights)
    assert capsys.readouterr().err.splitlines() == [f"error: {tmp_path / 'loop.png'}: a symbolic link loop",
                                                    f"error: {tmp_path / 'missing'}: no such file or folder"]


def test_an_output_folder_that_is_a_link_loop(tmp_path, photos, weights):
    (tmp_path / "o").symlink_to("o")
    with pytest.raises(SystemExit, match=r"output folder .*o: a symbolic link loop"):
        upscale(photos, "-o", tmp_path / "o", "--weights", weights)


def test_without_opencv_16_bit_files_are_one_line_each(tmp_path, photos, weights, capsys, monkeypatch):
    """OpenCV is a declared dependency, but an environment can lack it: the 16-bit files it reads (RGB PNG) or
    writes (16-bit PNG) are named with the package they need, and the others are upscaled."""
    import cv2

    cv2.imwrite(str(photos / "rgb16.png"), np.ascontiguousarray(deep(astronaut())[..., ::-1]))
    Image.fromarray(deep(camera())).save(photos / "gray16.png")  # Pillow reads it; OpenCV writes 16-bit PNG
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if not installed
    out = tmp_path / "out"
    assert upscale(photos, "-o", out, "--weights", weights) == 1
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_x2.png", "chelsea_x2.png"]
    captured = capsys.readouterr()
    errors = [line.strip() for line in captured.err.splitlines() if "error:" in line]
    assert errors == [
        f"error: {photos / 'gray16.png'}: writing 16-bit PNG needs OpenCV (pip install "
        f"opencv-python-headless), which cannot be imported here (import of cv2 halted; None in sys.modules)",
        f"error: {photos / 'rgb16.png'}: reading 16-bit PNG pixels needs OpenCV (pip install "
        f"opencv-python-headless), which cannot be imported here (import of cv2 halted; None in sys.modules)"]
    assert "Traceback" not in captured.err and "2 of 4 images upscaled x2" in captured.out


def test_without_tifffile_16_bit_tiff_output_is_one_line(tmp_path, weights, capsys, monkeypatch):
    Image.fromarray(deep(camera())).save(tmp_path / "gray16.png")
    monkeypatch.setitem(sys.modules, "tifffile", None)
    assert upscale(tmp_path / "gray16.png", "-o", tmp_path / "o", "--weights", weights, "--ext", "tif") == 1
    assert "gray16.png: writing 16-bit TIFF needs tifffile (pip install tifffile)" in capsys.readouterr().err
    assert list((tmp_path / "o").iterdir()) == []


def test_a_tiff_whose_second_page_is_corrupt_is_one_line(tmp_path, photos, weights, capsys):
    """Pillow raises TypeError for a TIFF page without dimensions (found by flipping bytes of TIFF files)."""
    buffer = io.BytesIO()
    Image.fromarray(astronaut()).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    entries = struct.unpack("<H", data[ifd:ifd + 2])[0]
    data += bytes(len(data) % 2)
    data[ifd + 2 + 12 * entries:ifd + 6 + 12 * entries] = struct.pack("<I", len(data))  # a second page, with only
    data += struct.pack("<HHHI4sI", 1, 0x0131, 2, 4, b"abc\0", 0)                      # a Software tag
    (photos / "two_pages.tif").write_bytes(data)
    assert upscale(photos, "-o", tmp_path / "o", "--weights", weights) == 1
    captured = capsys.readouterr()
    assert f"error: {photos / 'two_pages.tif'}: truncated or corrupt image data (Missing dimensions)" in captured.err
    assert "Traceback" not in captured.err and "2 of 3 images upscaled x2" in captured.out


def test_transparency_for_jpeg_is_refused_before_the_work(tmp_path, weights, capsys):
    Image.fromarray(sprite_rgba(), "RGBA").save(tmp_path / "s.png")
    assert upscale(tmp_path / "s.png", "-o", tmp_path / "o", "--weights", weights, "--ext", "jpg") == 1
    assert "s.png: has transparency, which JPEG cannot store" in capsys.readouterr().err
    assert list((tmp_path / "o").iterdir()) == []


def test_formats_quality_suffix(tmp_path, weights):
    with Image.open(grace_hopper_path()) as img:
        img.crop((200, 100, 280, 160)).save(tmp_path / "g.png")
    out = tmp_path / "o"
    for ext, quality in (("jpg", 30), ("webp", 60), ("tif", 95)):
        assert upscale(tmp_path / "g.png", "-o", out, "--weights", weights, "--ext", ext, "--quality", quality,
                       "--suffix", f"-{quality}") == 0
    assert sorted(p.name for p in out.iterdir()) == ["g-30.jpg", "g-60.webp", "g-95.tif"]
    for name, fmt in (("g-30.jpg", "JPEG"), ("g-60.webp", "WEBP"), ("g-95.tif", "TIFF")):
        with Image.open(out / name) as img:
            assert img.format == fmt and img.size == (160, 120)


def test_recursive_mirrors_the_tree_and_skips_its_own_output(tmp_path, weights):
    root = tmp_path / "album"
    (root / "2024" / "june").mkdir(parents=True)
    (root / ".cache").mkdir()
    Image.fromarray(astronaut()).save(root / "a.png")
    Image.fromarray(camera()).save(root / "2024" / "june" / "b.jpg")
    Image.fromarray(camera()).save(root / ".cache" / "c.png")
    out = root / "big"
    assert upscale(root, "-o", out, "--weights", weights, "--recursive") == 0
    assert upscale(root, "-o", out, "--weights", weights, "--recursive", "--overwrite") == 0  # not its outputs
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["2024/june/b_x2.png", "a_x2.png"]


def test_two_inputs_with_one_output_are_refused_by_name(tmp_path, weights, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    Image.fromarray(astronaut()).save(tmp_path / "x" / "photo.png")
    Image.fromarray(camera()).save(tmp_path / "y" / "photo.jpg")
    assert upscale(tmp_path / "x", tmp_path / "y", "-o", tmp_path / "o", "--weights", weights) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'y' / 'photo.jpg'}: {tmp_path / 'x' / 'photo.png'} is also written to" in err
    assert np.asarray(Image.open(tmp_path / "o" / "photo_x2.png")).shape == (62, 74, 3)


def test_an_output_never_replaces_an_input(tmp_path, weights, capsys):
    Image.fromarray(astronaut()).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    assert upscale(tmp_path / "a.png", "-o", tmp_path, "--weights", weights, "--suffix", "", "--overwrite") == 1
    assert (tmp_path / "a.png").read_bytes() == before
    assert "is an input of this run" in capsys.readouterr().err


def test_an_output_folder_that_is_also_the_input_folder(tmp_path, photos, weights, capsys):
    """A second run into the folder it reads leaves out the first run's outputs (photo_x2.png beside photo.png): it
    neither upscales them again (photo_x2_x2.png) nor calls the originals' outputs inputs."""
    assert upscale(photos, "-o", photos, "--weights", weights) == 0
    names = ["astronaut.png", "astronaut_x2.png", "chelsea.jpg", "chelsea_x2.png"]
    assert sorted(p.name for p in photos.iterdir()) == names
    written = (photos / "astronaut_x2.png").read_bytes()
    capsys.readouterr()
    assert upscale(photos, "-o", photos, "--weights", weights) == 0
    assert sorted(p.name for p in photos.iterdir()) == names and (photos / "astronaut_x2.png").read_bytes() == written
    captured = capsys.readouterr()
    assert (f"note: left out 2 files of the output folder named as outputs of this run (earlier outputs, not inputs):"
            f" {photos / 'astronaut_x2.png'}, {photos / 'chelsea_x2.png'}") in captured.err
    assert "error" not in captured.err and "0 of 2 images upscaled x2" in captured.out and "2 skipped" in captured.out
    assert upscale(photos, "-o", photos, "--weights", weights, "--overwrite") == 0  # replaces the earlier outputs
    assert sorted(p.name for p in photos.iterdir()) == names
    assert "2 of 2 images upscaled x2" in capsys.readouterr().out


def test_a_file_named_as_an_output_is_an_input_when_given_by_name(tmp_path, weights, capsys):
    Image.fromarray(astronaut()).save(tmp_path / "a.png")
    Image.fromarray(camera()).save(tmp_path / "a_x2.png")
    before = (tmp_path / "a_x2.png").read_bytes()
    assert upscale(tmp_path / "a.png", tmp_path / "a_x2.png", "-o", tmp_path, "--weights", weights) == 1
    assert (tmp_path / "a_x2.png").read_bytes() == before
    assert "its output" in capsys.readouterr().err and (tmp_path / "a_x2_x2.png").is_file()


def test_an_output_name_too_long_is_one_line_per_file_before_the_work(tmp_path, photos, weights, capsys,
                                                                       monkeypatch):
    monkeypatch.setattr(Upscaler, "upscale_picture", lambda self, picture: pytest.fail("upscaled"))
    out = tmp_path / "out"
    assert upscale(photos, "-o", out, "--weights", weights, "--suffix", "x" * 300) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 2 and all("File name too long" in e for e in errors) and "Traceback" not in captured.err
    assert "2 failed" in captured.out and list(out.iterdir()) == []


@pytest.mark.parametrize("suffix", ["/../../x", "_x2/big", "../x"])
def test_a_suffix_with_a_path_separator_is_refused(tmp_path, photos, weights, capsys, suffix):
    out = tmp_path / "deep" / "out"
    assert upscale(photos, "-o", out, "--weights", weights, "--suffix", suffix) == 2
    assert capsys.readouterr().err == (f"error: --suffix {suffix!r} has a path separator ('/'); it must be part of a "
                                       f"file name\n")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["astronaut.png", "chelsea.jpg", "in"]


# -- never destroy a file ---------------------------------------------------------------------------------

def test_existing_outputs_survive_without_overwrite(tmp_path, photos, weights, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "astronaut_x2.png").write_bytes(b"precious")
    assert upscale(photos, "-o", out, "--weights", weights) == 0
    assert (out / "astronaut_x2.png").read_bytes() == b"precious"
    captured = capsys.readouterr()
    assert "astronaut_x2.png exists (--overwrite replaces it)" in captured.err
    assert "1 of 2 images upscaled x2" in captured.out and "1 skipped" in captured.out
    assert upscale(photos, "-o", out, "--weights", weights, "--overwrite") == 0
    assert Image.open(out / "astronaut_x2.png").size == (74, 62)


def test_leftovers_of_a_killed_run_are_removed(tmp_path, photos, weights):
    out = tmp_path / "out"
    out.mkdir()
    leftover = out / ".astronaut_x2.png.k1ll3d.tmp"
    leftover.write_bytes(b"half a png")
    unrelated = out / ".notes.txt.abc.tmp"
    unrelated.write_bytes(b"not ours")
    assert upscale(photos, "-o", out, "--weights", weights) == 0
    assert not leftover.exists() and unrelated.exists()


SLOW_WRITE = """
import sys, time
from PIL import Image
import wdsr_fast.io.images as io
real = io._write_pillow
def slow(pixels, tmp, *rest):
    real(pixels, tmp, *rest)
    print("writing", flush=True)
    time.sleep(60)
io._write_pillow = slow
from wdsr_fast.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_remove_temporary_files(tmp_path, photos, weights, sig, status):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, "upscale", str(photos / "astronaut.png"), "-o",
                                str(out), "--weights", str(weights), "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=sigint_as_in_a_terminal)
    assert process.stdout.readline().strip() == "writing"
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # a temporary file exists now
    process.send_signal(sig)
    process.wait(timeout=60)
    assert process.returncode == status
    assert list(out.iterdir()) == []


PAUSED_WRITE = """
import sys
import wdsr_fast.io.images as io
real = io._write_pillow
def paused(pixels, tmp, *rest):
    real(pixels, tmp, *rest)
    print("written", tmp, flush=True)
    sys.stdin.readline()  # the other run goes on meanwhile
io._write_pillow = paused
from wdsr_fast.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_runs_into_one_folder_keep_each_others_outputs(tmp_path, weights, capsys):
    """Two runs write photo_x2.png into one folder from different photos, without --overwrite: the one that finishes
    first keeps its file, the other says so and exits 0; no file holds the other run's picture."""
    for name, pixels in (("first", astronaut()), ("second", camera(31, 37))):
        (tmp_path / name).mkdir()
        Image.fromarray(pixels).save(tmp_path / name / "photo.png")
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-c", PAUSED_WRITE, "upscale", str(tmp_path / "first"), "-o", str(out),
                              "--weights", str(weights), "--device", "cpu"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = first.stdout.readline().split()
        assert said[:1] == ["written"], first.stderr.read() if first.poll() is not None else said
        temporary = Path(said[1])
        assert temporary.parent == out and temporary.is_file()  # the first run is writing, its file not yet in place
        assert upscale(tmp_path / "second", "-o", out, "--weights", weights) == 0  # the second run, meanwhile
        assert temporary.is_file()  # the second run's sweep of leftovers left the live run's file alone
        second_picture = np.asarray(Image.open(out / "photo_x2.png"))
        assert second_picture.ndim == 2  # camera: gray
        stdout, stderr = first.communicate("\n", timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert np.array_equal(np.asarray(Image.open(out / "photo_x2.png")), second_picture)  # kept
    assert f"{out / 'photo_x2.png'} appeared while it was being written (another run?); it was kept" in stderr
    assert "0 of 1 images upscaled" in stdout and "1 skipped" in stdout and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["photo_x2.png"]


@pytest.mark.parametrize("links", ["hard links", "no hard links"])
def test_an_output_that_appears_during_the_work_is_kept(tmp_path, photos, weights, capsys, monkeypatch, links):
    """Another run creates the output between this run's check for it and the rename into place; also on a file
    system without hard links (FAT, some network shares), where the name is claimed by an exclusive create."""
    if links == "no hard links":
        def refuse(*args, **kwargs):
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))

        monkeypatch.setattr(os, "link", refuse)
    out = tmp_path / "out"
    real = Upscaler.upscale_picture

    def meanwhile(self, picture):
        (out / "astronaut_x2.png").write_bytes(b"another run's")
        return real(self, picture)

    monkeypatch.setattr(Upscaler, "upscale_picture", meanwhile)
    assert upscale(photos / "astronaut.png", "-o", out, "--weights", weights) == 0
    assert (out / "astronaut_x2.png").read_bytes() == b"another run's"
    captured = capsys.readouterr()
    assert "appeared while it was being written (another run?); it was kept" in captured.err
    assert "0 of 1 images upscaled x2" in captured.out and "1 skipped" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_x2.png"]


# -- failures that are one line each ---------------------------------------------------------------------

def test_disk_full_is_one_line_per_file(tmp_path, photos, weights, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("wdsr_fast.io.images._write_pillow", full)
    out = tmp_path / "out"
    assert upscale(photos, "-o", out, "--weights", weights) == 1
    err = capsys.readouterr().err
    assert err.count("No space left on device") == 2 and "Traceback" not in err
    assert list(out.iterdir()) == []


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs, where the machine lets tests mount one."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip() or result.returncode})")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk(tmp_path, weights, tiny_disk, capsys):
    with Image.open(grace_hopper_path()) as img:
        img.crop((0, 0, 150, 150)).save(tmp_path / "big.png")  # x2: about 100 KB of PNG
    Image.fromarray(astronaut(8, 8)).save(tmp_path / "small.png")
    assert upscale(tmp_path / "big.png", tmp_path / "small.png", "-o", tiny_disk, "--weights", weights) == 1
    err = capsys.readouterr().err
    assert "big.png: cannot write" in err and "No space left on device" in err and "Traceback" not in err
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["small_x2.png"]


@pytest.mark.parametrize("make", ["file", "under_a_file"])
def test_unusable_output_folder_stops_before_any_model_work(tmp_path, photos, weights, make, monkeypatch):
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" if make == "file" else tmp_path / "taken" / "out"
    monkeypatch.setattr("wdsr_fast.cli.upscale.Upscaler", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit, match="output folder .*taken"):
        upscale(photos, "-o", out, "--weights", weights)


def test_read_only_output_folder(tmp_path, photos, weights):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        with pytest.raises(SystemExit, match="cannot write into output folder .*Read-only file system"):
            upscale(photos, "-o", mount, "--weights", weights)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_nan_weights_stop_with_their_name(tmp_path, photos):

    from wdsr_fast import save_model

    model = small_model()
    with torch.no_grad():
        model.head[0].weight_g.fill_(float("nan"))
    save_model(model, tmp_path / "nan.safetensors")
    with pytest.raises(SystemExit, match=r"nan.safetensors: weights hold NaN"):
        upscale(photos, "-o", tmp_path / "o", "--weights", tmp_path / "nan.safetensors")


def test_non_finite_output_is_one_line_per_file(tmp_path, photos, weights, capsys, monkeypatch):
    from wdsr_fast.inference.fast_wdsr import FastWDSR

    real = FastWDSR.forward
    monkeypatch.setattr(FastWDSR, "forward", lambda self, image: real(self, image) * float("inf"))
    assert upscale(photos, "-o", tmp_path / "o", "--weights", weights) == 1
    err = capsys.readouterr().err
    assert err.count(f"NaN or infinite values with weights {weights}") == 2
    assert list((tmp_path / "o").iterdir()) == []


def test_out_of_memory_is_one_line_per_file(tmp_path, photos, weights, capsys, monkeypatch):
    from wdsr_fast.inference.fast_wdsr import FastWDSR

    def too_big(self, image):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB.\nGPU 0 has a total capacity")

    monkeypatch.setattr(FastWDSR, "forward", too_big)
    assert upscale(photos, "-o", tmp_path / "o", "--weights", weights) == 1
    err = capsys.readouterr().err
    assert err.count("out of memory on cpu with 16x16-pixel tiles (the smallest)") == 2 and "Traceback" not in err


def test_pixel_budget_flag(tmp_path, photos, weights, capsys):
    assert upscale(photos / "astronaut.png", "-o", tmp_path / "o", "--weights", weights, "--max-pixels", 1000) == 1
    assert "over the pixel budget of 1,000" in capsys.readouterr().err
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # restored after the run
    assert upscale(photos / "astronaut.png", "-o", tmp_path / "o", "--weights", weights, "--max-pixels", 0) == 0


def test_a_tile_pad_below_the_receptive_radius_is_warned_of_once(tmp_path, photos, weights, capsys):
    """Below the receptive radius tiles can show their seams (the README says tiling never changes the result):
    the run goes on, with one warning naming the radius; at the radius and above, no warning."""
    from wdsr_fast import load_model

    radius = load_model(weights).config.receptive_radius
    assert upscale(photos, "-o", tmp_path / "a", "--weights", weights, "--tile", 9, "--tile-pad", 0) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [f"warning: --tile-pad 0: a tile pad of 0 pixels is below this network's receptive radius of "
                        f"{radius}: an image cut into tiles can show their seams (the default pad, {radius}, makes "
                        f"tiling exact)"]
    assert upscale(photos, "-o", tmp_path / "b", "--weights", weights, "--tile", 9, "--tile-pad", radius) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("side", [10_000, 30_000])  # over the budget; over twice the budget (Pillow's bomb)
def test_a_huge_image_is_refused_naming_the_flag(tmp_path, photos, weights, capsys, side):
    (photos / "huge.png").write_bytes(png_file(side, side, 8, 2))
    assert upscale(photos, "-o", tmp_path / "o", "--weights", weights) == 1
    err = capsys.readouterr().err
    assert (f"error: {photos / 'huge.png'}: {side}x{side} is {side * side:,} pixels, over the pixel budget of "
            f"89,478,485 (PIL.Image.MAX_IMAGE_PIXELS; the upscale command's --max-pixels)") in err


def test_image_smaller_than_tile(tmp_path, weights):
    Image.fromarray(astronaut(3, 2)).save(tmp_path / "tiny.png")
    assert upscale(tmp_path / "tiny.png", "-o", tmp_path / "o", "--weights", weights, "--tile", 64) == 0
    assert Image.open(tmp_path / "o" / "tiny_x2.png").size == (4, 6)


@pytest.mark.parametrize("argv,message", [
    ([], "no bundled weights"),
    (["--weights", "WEIGHTS", "--scale", "3"], "x2 model"),
    (["--weights", "MISSING"], "no such checkpoint file"),
    (["--weights", "WEIGHTS", "--device", "tpu:7"], "not a torch device|not available"),
])
def test_bad_arguments(tmp_path, photos, weights, argv, message, monkeypatch):
    bundled_weights(monkeypatch, lambda scale: None)
    argv = [str(weights) if a == "WEIGHTS" else str(tmp_path / "missing.pth") if a == "MISSING" else a for a in argv]
    with pytest.raises(SystemExit, match=message):
        main(["upscale", str(photos), "-o", str(tmp_path / "o")] + argv)


def test_half_on_a_cpu_without_bf16_kernels_warns_in_one_line(tmp_path, photos, weights, capsys, monkeypatch):
    from wdsr_fast.ops import cpu_backend

    monkeypatch.setattr(cpu_backend, "bf16_isa", lambda: None)
    assert upscale(photos, "-o", tmp_path / "o", "--weights", weights, "--device", "cpu", "--half") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(
        "warning: half precision on this CPU runs in float32: the CPU kernels run bfloat16 on CPUs with AVX512-BF16 (")


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_a_backend_that_cannot_run_here_stops_once_before_the_batch(tmp_path, photos, weights, capsys, monkeypatch,
                                                                     backend):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the Triton interpreter would run on CPU tensors
    assert upscale(photos, "-o", tmp_path / "o", "--weights", weights, "--device", "cpu", "--backend", backend) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: --backend {backend} cannot run on cpu: backend {backend!r} runs on "
                                         f"CUDA tensors only, got a CPU tensor (choose another --device, or "
                                         f"--backend auto)"]
    assert captured.out == "" and list((tmp_path / "o").iterdir()) == []


def test_threads_flag(tmp_path, photos, weights, monkeypatch):
    """--threads sets torch's CPU threads for the run; without it torch's default stands."""
    before = torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    calls = []
    assert upscale(photos / "astronaut.png", "-o", tmp_path / "a", "--weights", weights, "--threads", 1) == 0
    assert upscale(photos / "astronaut.png", "-o", tmp_path / "b", "--weights", weights) == 0
    assert calls == [1] and torch.get_num_threads() == before


def test_no_images(tmp_path, weights):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no images"):
        upscale(tmp_path / "empty", "-o", tmp_path / "o", "--weights", weights)


@pytest.mark.parametrize("flag,value", [("--tile", "0"), ("--quality", "101"), ("--tile-pad", "-1"),
                                        ("--threads", "0")])
def test_flag_values_are_usage_errors(tmp_path, photos, weights, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        upscale(photos, "-o", tmp_path / "o", "--weights", weights, flag, value)
    assert exit_info.value.code == 2 and "must be" in capsys.readouterr().err


def test_module_entry_point(tmp_path, photos, weights):
    result = subprocess.run([sys.executable, "-m", "wdsr_fast", "upscale", str(photos / "chelsea.jpg"), "-o",
                             str(tmp_path / "o"), "--weights", str(weights)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "chelsea_x2.png").is_file()


def test_help_is_whole_sentences_without_markup():
    """``wdsr-fast --help`` and every subcommand's: descriptions end their sentences, no reST backticks."""
    import argparse

    from wdsr_fast.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"upscale", "demo", "train", "eval", "bench", "export", "info"}
    for name, command in [("wdsr-fast", parser), *commands.items()]:
        assert command.description and command.description.rstrip().endswith("."), name
        assert "`" not in command.format_help(), name


STARTUP_INTERRUPTED = """
import sys

class CtrlC:  # Ctrl-C while torch is being imported, the longest part of start-up
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
if sys.argv[1] == "-m":  # python -m wdsr_fast ...
    import runpy
    sys.argv = ["wdsr_fast", *sys.argv[2:]]
    runpy.run_module("wdsr_fast", run_name="__main__", alter_sys=True)
else:  # the wdsr-fast script
    from wdsr_fast.cli import main
    sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("how", ["-m", "script"])
def test_ctrl_c_during_start_up_is_interrupted(tmp_path, photos, weights, how):
    result = subprocess.run([sys.executable, "-c", STARTUP_INTERRUPTED, how, "upscale", str(photos), "-o",
                             str(tmp_path / "o"), "--weights", str(weights)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (130, "interrupted\n")


def test_ctrl_c_while_the_model_loads_is_interrupted(tmp_path, photos, weights, capsys, monkeypatch):
    def loading(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("wdsr_fast.cli.upscale.Upscaler", loading)
    assert upscale(photos, "-o", tmp_path / "o", "--weights", weights) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_bundled_path(tmp_path, monkeypatch):
    import wdsr_fast.weights as bundled

    monkeypatch.setattr(bundled, "HERE", tmp_path)
    assert bundled.bundled_path(3) is None
    (tmp_path / "wdsr-b-32x16-x3.safetensors").write_bytes(b"")
    assert bundled.bundled_path(3) == tmp_path / "wdsr-b-32x16-x3.safetensors"


def test_bundled_weights_are_the_default(tmp_path, photos, weights, monkeypatch):
    asked = []
    bundled_weights(monkeypatch, lambda scale: asked.append(scale) or weights)
    assert upscale(photos / "astronaut.png", "-o", tmp_path / "o") == 0
    assert asked == [2] and (tmp_path / "o" / "astronaut_x2.png").is_file()


def test_ychfan_checkpoint_as_weights(tmp_path, photos):
    """An authors' ychfan/wdsr epoch_30.pth works as --weights, with its [0, 1] normalisation."""
    from wdsr_fast import preset

    state = ychfan_state(randomise(preset("ychfan-small", 3, n_feats=8, block_feats=16, n_resblocks=2)))
    torch.save({"model_state_dict": state, "epoch": 30}, tmp_path / "epoch_30.pth")
    out = tmp_path / "o"
    assert upscale(photos / "astronaut.png", "-o", out, "--weights", tmp_path / "epoch_30.pth", "--scale", 3,
                   "--tile", 16) == 0
    lr = torch.from_numpy(np.asarray(Image.open(photos / "astronaut.png")).copy()).permute(2, 0, 1)[None] / 255.0
    expected = tensor_to_uint8(ychfan_forward(state, lr, 2, 3), 1.0)
    written = np.asarray(Image.open(out / "astronaut_x3.png"))
    assert np.abs(written.astype(int) - expected).max() <= 1 and (written != expected).mean() < 1e-3
