"""Train the bundled WDSR-B 32x16 weights on photos that ship offline, and write the model card numbers.

    python scripts/train_bundled.py --scale 2 --steps 2000 --work runs/bundled

Training photos: scikit-image's coffee, rocket, immunohistochemistry, hubble_deep_field, retina,
stereo_motorcycle (left view) and matplotlib's grace_hopper.jpg. Held out for evaluation: astronaut, chelsea.
LR images are made by MATLAB-compatible bicubic. The recipe is the paper's (L1, Adam 1e-3, batch 16,
lr x0.2 at 2/3 and 5/6 of the steps), shortened to fit a CPU: 32x32 LR patches and a few thousand steps.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TRAIN_PHOTOS = ("coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "stereo_motorcycle")
HELD_OUT = ("astronaut", "chelsea")


def photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)


def write_photos(work: Path) -> tuple:
    import matplotlib.cbook

    train, held_out = work / "train", work / "held_out"
    for folder, names in ((train, TRAIN_PHOTOS), (held_out, HELD_OUT)):
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.fromarray(photo(name)).save(folder / f"{name}.png")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        Image.open(f).convert("RGB").save(train / "grace_hopper.png")
    return train, held_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, required=True, choices=(2, 3, 4))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("runs/bundled"))
    parser.add_argument("--install", action="store_true", help="copy the weights into wdsr_fast/weights/")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--photos-only", action="store_true", help="only write the train/held_out photo folders")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from wdsr_fast import save_model
    from wdsr_fast.evaluate import evaluate, format_rows
    from wdsr_fast.train import Run, TrainConfig
    from wdsr_fast.weights import HERE

    train, held_out = write_photos(args.work)
    if args.photos_only:
        return
    out = args.work / f"x{args.scale}"
    cfg = TrainConfig(data=str(train), out=str(out), scale=args.scale, steps=args.steps, patch=args.patch,
                      batch=16, patches_per_image=1000, workers=0, log_every=50, checkpoint_every=250,
                      device="cpu", seed=args.scale)
    run = Run(cfg, resume=args.resume)
    final = run.run()
    rows = evaluate(run.final_model(), str(held_out), args.scale)
    print(format_rows(rows))
    (out / "held_out.json").write_text(json.dumps(rows, indent=1))
    if args.install:
        save_model(run.final_model(), HERE / f"wdsr-b-32x16-x{args.scale}.safetensors")
    print(f"weights: {final}")


if __name__ == "__main__":
    main()
