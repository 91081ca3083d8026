"""Multi-object validation clips of alike instances, cut from held-out train sequences.

The validation set's sequences hold one object each, so a weights choice made on them cannot
see what alike instances (dogs-jump's three dogs) do to it. Each clip here takes one
validation sequence as its background and pastes three copies of another one's object over
it, each animated from its own frame offset of that object's video (so the copies look alike
but move apart), 25-40% of the frame height, crossing one another. Written in DAVIS layout
for `vos-ros segment` / `eval`. A clip index fully defines the clip.

    python tools/alike_clips.py --out ALIKE [--clips 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from vos_ros.data import davis
from vos_ros.data.demo_scene import paste_cutout
from vos_ros.data.pasted import cutout

VALIDATION = ("dance-jump", "dog-agility", "hockey", "motorbike", "paragliding", "scooter-gray", "soccerball")
COPIES = 3


def write_clip(root: Path, out: Path, index: int, num_frames: int) -> str:
    rng = np.random.default_rng(100 + index)
    background = VALIDATION[index % len(VALIDATION)]
    obj = VALIDATION[(index + 3) % len(VALIDATION)]
    paths = davis.frame_paths(root, background)
    object_frames = davis.frame_paths(root, obj)
    height, width = davis.read_frame(paths[0]).shape[:2]
    sizes = (rng.uniform(0.25, 0.4, COPIES) * height).astype(int)
    offsets = rng.integers(0, 40, COPIES)
    x0 = np.array([0.2, 0.5, 0.8]) * width + rng.uniform(-0.05, 0.05, COPIES) * width
    # The outer copies walk towards each other through the middle one.
    vx = np.array([1.0, rng.choice([-0.3, 0.3]), -1.0]) * width * rng.uniform(0.008, 0.012)
    y0 = rng.uniform(0.4, 0.65, COPIES) * height
    phase = rng.uniform(0, 2 * np.pi, COPIES)
    name = f"alike{index}"
    for folder in ("JPEGImages/480p", "Annotations/480p"):
        (out / folder / name).mkdir(parents=True, exist_ok=True)
    for t in range(num_frames):
        canvas = davis.read_frame(paths[t % len(paths)]).astype(np.float32)
        labels = np.zeros((height, width), np.uint16)
        for k in range(COPIES):
            texture, coverage = cutout(root, obj, int(sizes[k]), (int(offsets[k]) + t) % len(object_frames))
            x = np.mod(x0[k] + vx[k] * t, 2 * width)
            x = 2 * width - x if x > width else x  # bounce off the borders
            y = y0[k] + 0.03 * height * np.sin(0.2 * t + phase[k])
            paste_cutout(canvas, labels, texture, coverage, (float(x), float(y)), 0.0, k + 1)
        image = cv2.cvtColor(np.clip(canvas, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(out / "JPEGImages/480p" / name / f"{t:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        davis.write_labels(out / "Annotations/480p" / name / f"{t:05d}.png", labels)
    return f"{name}: {COPIES} copies of {obj} over {background}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default="../shared/data/davis2016/train", help="DAVIS root holding the validation set")
    parser.add_argument("--out", required=True, help="DAVIS-layout folder to write")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    for index in range(args.clips):
        print(write_clip(Path(args.train), Path(args.out), index, args.frames))


if __name__ == "__main__":
    main()
