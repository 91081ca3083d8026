"""Derive the object masks of the demo scene (vos_ros/data/demo_scene.py) from scikit-image's
sample photos, once; the PNGs are committed so that the scene does not depend on GrabCut's
version. Run: .venv/bin/python tools/make_demo_masks.py"""

from pathlib import Path

import cv2
import numpy as np
import skimage.data

OUT = Path(__file__).resolve().parents[1] / "vos_ros" / "data" / "demo_masks"


def grabcut(image: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """The largest GrabCut foreground component inside `rect`, holes closed."""
    cv2.setRNGSeed(0)
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), mask, rect, np.zeros((1, 65)), np.zeros((1, 65)), 8,
                cv2.GC_INIT_WITH_RECT)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    _, components, stats, _ = cv2.connectedComponentsWithStats(fg)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return cv2.morphologyEx((components == largest).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    masks = {
        "coffee": grabcut(skimage.data.coffee(), (25, 10, 560, 385)),  # cup, saucer and spoon
    }
    logo = skimage.data.logo()[..., :3]  # a disc on white, cut in two by a white curve: the hull of both halves
    ys, xs = np.nonzero(logo.min(axis=2) < 235)
    disc = np.zeros(logo.shape[:2], np.uint8)
    cv2.fillConvexPoly(disc, cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32)), 1)
    masks["logo"] = disc
    face = np.zeros(skimage.data.chelsea().shape[:2], np.uint8)  # the cat's face, an ellipse
    cv2.ellipse(face, (195, 165), (165, 130), 0, 0, 360, 1, -1)
    masks["chelsea"] = face
    for name, mask in masks.items():
        cv2.imwrite(str(OUT / f"{name}.png"), mask * 255)
        print(name, mask.shape, f"{mask.mean():.3f} of the photo")


if __name__ == "__main__":
    main()
