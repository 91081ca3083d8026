"""DAVIS folder layout: ROOT/JPEGImages/480p/SEQ/NNNNN.jpg, ROOT/Annotations/480p/SEQ/NNNNN.png."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def list_sequences(root: str | Path) -> list[str]:
    folder = Path(root) / "JPEGImages" / "480p"
    if not folder.is_dir():
        raise FileNotFoundError(f"not a DAVIS folder (missing {folder})")
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def frame_paths(root: str | Path, sequence: str) -> list[Path]:
    paths = sorted((Path(root) / "JPEGImages" / "480p" / sequence).glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no frames for sequence '{sequence}' under {root}")
    return paths


def annotation_path(root: str | Path, sequence: str, frame: int = 0) -> Path:
    return Path(root) / "Annotations" / "480p" / sequence / f"{frame:05d}.png"


def read_frame(path: str | Path) -> np.ndarray:
    """RGB uint8."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_labels(path: str | Path) -> np.ndarray:
    """uint16 id map. Palette PNGs keep their indices; a 0/255 single-object mask becomes ids {0, 1}."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mask file not found: {path}")
    with Image.open(path) as image:
        mode = image.mode
        array = np.array(image)
    if array.ndim == 3:
        array = array[..., 0]
    if mode != "P" and set(np.unique(array).tolist()) <= {0, 255}:
        array = (array > 0).astype(np.uint8)
    return array.astype(np.uint16)


def read_ground_truth(root: str | Path, sequence: str) -> list[np.ndarray] | None:
    """All annotations of a sequence when every frame has one, else None."""
    paths = [annotation_path(root, sequence, i) for i in range(len(frame_paths(root, sequence)))]
    if not all(p.exists() for p in paths):
        return None
    return [read_labels(p) for p in paths]


def palette() -> list[int]:
    """The DAVIS / PASCAL VOC colour map (flat RGB list for PIL)."""
    colours = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours += [r, g, b]
    return colours


def write_labels(path: str | Path, labels: np.ndarray) -> None:
    """Index PNG: palette mode for ids up to 255 (DAVIS style), 16-bit grey above."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if int(labels.max(initial=0)) <= 255:
        image = Image.fromarray(labels.astype(np.uint8), mode="P")
        image.putpalette(palette())
        image.save(path)
    else:
        cv2.imwrite(str(path), labels.astype(np.uint16))

