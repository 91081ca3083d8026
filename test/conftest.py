"""Shared fixtures of the engine tests (DAVIS paths: shared_data.py): trackers, and a DAVIS-layout
folder and a still-image folder written from the embedded synthetic clips (no shared data needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vos_ros.data.synthetic import make_clip

SIZE = (320, 192)


@pytest.fixture(scope="session")
def cpu_tracker_factory():
    """Trackers with the shipped cpu weights (the networks load once per session)."""
    from vos_ros.inference import Tracker

    cache = {}

    def make(**overrides):
        from vos_ros.config import load_config

        config = load_config("cpu", overrides)
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            cache[key] = Tracker.from_config(config)
        tracker = cache[key]
        tracker.reset()
        return tracker

    return make


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """One export cache for the session: an untrained network is seeded, so tests of the same
    graphs (LIP's detector under lip, ovsnet and dyenet) export them once."""
    return str(tmp_path_factory.mktemp("onnx_cache"))


@pytest.fixture(scope="session")
def davis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    for name, seed in (("alpha", 1), ("beta", 2)):
        clip = make_clip(12, SIZE, num_objects=1, seed=seed)
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True)
        (root / "Annotations" / "480p" / name).mkdir(parents=True)
        for i, (frame, labels) in enumerate(zip(clip.frames, clip.labels)):
            cv2.imwrite(str(root / "JPEGImages" / "480p" / name / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / "Annotations" / "480p" / name / f"{i:05d}.png"), (labels > 0).astype(np.uint8) * 255)
    return root


@pytest.fixture(scope="session")
def stills_root(tmp_path_factory):
    """Two still images: one salient object (0/255 mask), and two people (ids 1, 2)."""
    root = tmp_path_factory.mktemp("stills")
    clip = make_clip(2, SIZE, num_objects=2, seed=5)
    for name, image, mask in (("salient", clip.frames[0], (clip.labels[0] == 1).astype(np.uint8) * 255),
                              ("people", clip.frames[1], clip.labels[1].astype(np.uint8))):
        for folder in ("images", "masks"):
            (root / name / folder).mkdir(parents=True)
        cv2.imwrite(str(root / name / "images" / "0001.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / name / "masks" / "0001.png"), mask)
    return root
