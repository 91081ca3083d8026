"""Still images with object masks: ROOT/SET/images/NAME.jpg and ROOT/SET/masks/NAME.png.

Masks are 0/255 (one salient object: ECSSD, DUTS-TR) or instance ids 0..N (Penn-Fudan: one
id per person). Each instance is an object of its own; the others in the same image are
its alike instances.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import davis


class StillImages:
    """Every image of every SET under `root` that has a mask (read lazily, kept once read)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"still-image folder not found: {self.root}")
        self.items = []
        for images in sorted(self.root.glob("*/images")):
            masks = images.parent / "masks"
            self.items += [(p, masks / f"{p.stem}.png") for p in sorted(images.glob("*.jpg"))
                           if (masks / f"{p.stem}.png").exists()]
        if not self.items:
            raise FileNotFoundError(f"no images with masks under {self.root}/*/images and */masks")
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._cache:
            image_path, mask_path = self.items[index]
            self._cache[index] = davis.read_frame(image_path), davis.read_labels(mask_path)
        return self._cache[index]

    def random_object(self, rng: np.random.Generator, index: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """An image, one of its instances' masks (bool) and the image's index (`index`: from that image,
        e.g. an alike instance of an object already drawn; possibly the same one)."""
        if index is None:
            index = int(rng.integers(len(self.items)))
        image, labels = self._read(index)
        ids = np.unique(labels)
        ids = ids[ids != 0]
        if not len(ids):
            return image, np.zeros(labels.shape, bool), index
        return image, labels == ids[int(rng.integers(len(ids)))], index
