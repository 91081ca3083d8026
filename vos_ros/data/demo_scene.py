"""The embedded default input: a camera-like clip rendered from real photos, with ground truth.

scikit-image's sample photos (installed with the package, nothing downloaded): a garage
(`stereo_motorcycle`) as the scene, seen by a panning, slightly zooming camera; three cut-out
objects move in it: a coffee cup (id 1), a cat's face (id 2) that leaves the view on the right
and comes back, and a round sign (scikit-image's logo, id 3) that passes behind the cup. The
object masks were derived once from the photos (tools/make_demo_masks.py) and ship as PNGs.
Objects are alpha-blended with anti-aliased edges; an object's label is where its coverage
exceeds one half. A deterministic function of `num_frames` and `size`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .synthetic import SyntheticClip

_MASKS = Path(__file__).resolve().parent / "demo_masks"
# (photo and mask name, object height as a share of the frame height); ids follow this order.
OBJECTS = (("coffee", 0.34), ("chelsea", 0.30), ("logo", 0.30))
EXIT_SHARE, RETURN_SHARE = 0.22, 0.55  # object 2 is out of view between these shares of the clip
OCCLUSION_SHARE = 0.78  # object 3 is centred behind the cup here
PARALLAX = 0.8  # how much of the camera's motion the objects share (they are nearer than the scene)


def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    image = image[0] if isinstance(image, tuple) else image  # stereo pairs: the left view
    return image[..., :3]  # the logo is RGBA


def _cutout(name: str, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The object's pixels (float32 RGB) and coverage (float32 0..1), cropped to it and scaled."""
    image = _photo(name)
    mask = cv2.imread(str(_MASKS / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 127
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    scale = height / (y1 - y0)
    size = (max(1, round((x1 - x0) * scale)), height)
    texture = cv2.resize(image[y0:y1, x0:x1].astype(np.float32), size, interpolation=cv2.INTER_AREA)
    coverage = cv2.resize(mask[y0:y1, x0:x1].astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return texture, coverage


def _paths(t: float, width: int, height: int) -> list[tuple[float, float, float]]:
    """(centre x, centre y, rotation degrees) of each object at clip time t in [0, 1]."""
    cup = (0.30 * width + 0.05 * width * np.sin(2 * np.pi * t), 0.64 * height + 0.04 * height * np.cos(2 * np.pi * t),
           6 * np.sin(2 * np.pi * t))
    if t < EXIT_SHARE:  # drifts right and out of the view
        x = 0.84 + (1.3 - 0.84) * t / EXIT_SHARE
    elif t < RETURN_SHARE:
        x = 1.4  # out of view
    else:  # comes back from the right and settles
        x = 1.2 - 0.45 * min(1.0, (t - RETURN_SHARE) / 0.25)
    leaving = (x * width, 0.34 * height + 0.04 * height * np.sin(5 * t), 20 * np.sin(3 * t))
    # Glides from the right half to the left, behind the cup at OCCLUSION_SHARE.
    passing_x = 0.62 + (0.30 - 0.62) * np.clip((t - 0.35) / (OCCLUSION_SHARE - 0.35), 0, 1)
    if t > OCCLUSION_SHARE:
        passing_x = 0.30 - 0.12 * (t - OCCLUSION_SHARE) / (1 - OCCLUSION_SHARE)
    passing = (passing_x * width, 0.52 * height + 0.05 * height * np.sin(3 * t), -5 * np.sin(2 * t))
    return [cup, leaving, passing]  # ids 1, 2, 3


def _camera_view(scene: np.ndarray, t: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The camera's frame at time t (a pan across the scene and a slow zoom, as a hand-held or
    mobile-base camera) and how far scene points have moved in it since mid-clip: the objects
    move with the scene (PARALLAX of it) on top of their own paths."""
    def view(t):
        zoom = 1.0 + 0.06 * np.sin(np.pi * t)
        view_w, view_h = width / zoom, height / zoom
        x0 = (scene.shape[1] - view_w) * (0.15 + 0.7 * t)
        y0 = (scene.shape[0] - view_h) * (0.5 + 0.3 * np.sin(2 * np.pi * t))
        return zoom, x0, y0

    zoom, x0, y0 = view(t)
    camera = np.array([[zoom, 0, -x0 * zoom], [0, zoom, -y0 * zoom]], np.float32)
    canvas = cv2.warpAffine(scene, camera, (width, height), flags=cv2.INTER_LINEAR)
    mid_zoom, mid_x0, mid_y0 = view(0.5)
    centre = np.array([width / 2, height / 2])
    scene_point = np.array([mid_x0, mid_y0]) + centre / mid_zoom  # what is at the frame centre mid-clip
    shift = (scene_point - np.array([x0, y0])) * zoom - centre
    return canvas, PARALLAX * shift


def paste_cutout(canvas: np.ndarray, label: np.ndarray, texture: np.ndarray, coverage: np.ndarray,
                 centre: tuple[float, float], angle: float, object_id: int) -> None:
    """Alpha-blend a cut-out centred at `centre`, rotated by `angle`, warping only its window."""
    h, w = coverage.shape
    half = int(np.ceil(np.hypot(w, h) / 2)) + 2
    x0, y0 = int(centre[0]) - half, int(centre[1]) - half
    ax0, ay0 = max(x0, 0), max(y0, 0)
    ax1, ay1 = min(x0 + 2 * half, canvas.shape[1]), min(y0 + 2 * half, canvas.shape[0])
    if ax0 >= ax1 or ay0 >= ay1:
        return  # out of view
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    matrix[:, 2] += (centre[0] - w / 2 - ax0, centre[1] - h / 2 - ay0)
    size = (ax1 - ax0, ay1 - ay0)
    alpha = cv2.warpAffine(coverage, matrix, size, flags=cv2.INTER_LINEAR)
    pixels = cv2.warpAffine(texture, matrix, size, flags=cv2.INTER_LINEAR)
    window = canvas[ay0:ay1, ax0:ax1]
    window[:] = window * (1 - alpha[..., None]) + pixels * alpha[..., None]
    label[ay0:ay1, ax0:ax1][alpha > 0.5] = object_id


def demo_scene(num_frames: int = 90, size: tuple[int, int] = (854, 480)) -> SyntheticClip:
    width, height = size
    scene = _photo("stereo_motorcycle").astype(np.float32)
    cover = 1.35 * max(width / scene.shape[1], height / scene.shape[0])
    scene = cv2.resize(scene, (round(scene.shape[1] * cover), round(scene.shape[0] * cover)),
                       interpolation=cv2.INTER_AREA)
    cutouts = [_cutout(name, round(share * height)) for name, share in OBJECTS]
    paint_order = (2, 1, 0)  # object 3 first, so that the cup hides it
    rng = np.random.default_rng(0)
    frames, labels = [], []
    for index in range(num_frames):
        t = index / max(num_frames - 1, 1)
        canvas, shift = _camera_view(scene, t, width, height)
        label = np.zeros((height, width), np.uint16)
        paths = _paths(t, width, height)
        for k in paint_order:
            cx, cy, angle = paths[k]
            paste_cutout(canvas, label, *cutouts[k], (cx + shift[0], cy + shift[1]), angle, k + 1)
        light = 1.0 + 0.05 * np.sin(2 * np.pi * 1.5 * t)  # auto-exposure breathing
        noise = rng.normal(0, 2.0, canvas.shape).astype(np.float32)
        frames.append(np.clip(canvas * light + noise, 0, 255).astype(np.uint8))
        labels.append(label)
    return SyntheticClip(frames, labels)
