"""A target's 3D position from its mask and an aligned depth image (no ROS).

Frame: the camera's optical frame (REP 103: x right, y down, z forward), metres, pinhole
intrinsics from CameraInfo's K. Distortion is ignored: aligned depth from RGB-D drivers is
published rectified.

Robustness (the issue of mask edges and depth holes): the mask is eroded first, so that the
pixels that straddle the object's silhouette (whose depth is the background's) are left out;
pixels without depth (0 or NaN) are dropped; then only points within a band around the median
depth are kept (median absolute deviation, at least `min_band_m`), so that a stray background or
foreground patch inside the mask does not drag the centroid or inflate the box.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")  # millimetres (16-bit) or metres (float)


class DepthError(ValueError):
    """A depth image or camera model that cannot be used."""


@dataclass(frozen=True)
class Pinhole:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k, width: int, height: int) -> "Pinhole":
        """From a row-major 3x3 K (CameraInfo.k)."""
        fx, fy, cx, cy = float(k[0]), float(k[4]), float(k[2]), float(k[5])
        if not (fx > 0 and fy > 0 and width > 0 and height > 0):
            raise DepthError(f"camera model has no valid intrinsics (fx={fx}, fy={fy}, size {width}x{height})")
        return cls(fx, fy, cx, cy, int(width), int(height))


@dataclass(frozen=True)
class Target3D:
    centroid: np.ndarray  # (3,) mean of the kept surface points
    box_min: np.ndarray  # (3,) axis-aligned box of the kept points
    box_max: np.ndarray
    points: np.ndarray  # (N, 3) float32, the kept points

    @property
    def box_center(self) -> np.ndarray:
        return (self.box_min + self.box_max) / 2

    @property
    def box_size(self) -> np.ndarray:
        return self.box_max - self.box_min


def depth_in_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W) float32 metres, NaN where the sensor has no reading."""
    if encoding in ("16UC1", "mono16"):
        metres = depth.astype(np.float32) * 1e-3
        metres[depth == 0] = np.nan
        return metres
    if encoding == "32FC1":
        metres = depth.astype(np.float32, copy=True)
        metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
        return metres
    raise DepthError(f"depth encoding {encoding!r} is not one of {DEPTH_ENCODINGS}")


@dataclass(frozen=True)
class DepthSettings:
    erosion_px: int = 3  # mask erosion before sampling depth (edge pixels see the background)
    min_points: int = 20  # fewer valid pixels than this: no 3D for the target
    band_mads: float = 3.0  # kept depths: |d - median| <= band_mads * 1.4826 * MAD ...
    min_band_m: float = 0.05  # ... but at least this (a flat target has MAD ~ sensor noise)


def target_3d(mask: np.ndarray, depth_m: np.ndarray, camera: Pinhole, settings: DepthSettings = DepthSettings()
              ) -> Target3D | None:
    """The target's surface points, centroid and box, or None when too few pixels have depth.
    `mask` (image size) is resized to the depth image's size when they differ."""
    if depth_m.shape != (camera.height, camera.width):
        raise DepthError(f"depth image {depth_m.shape[1]}x{depth_m.shape[0]} does not match the camera model "
                         f"{camera.width}x{camera.height}")
    mask = mask.astype(np.uint8)
    if mask.shape != depth_m.shape:
        mask = cv2.resize(mask, (camera.width, camera.height), interpolation=cv2.INTER_NEAREST)
    if settings.erosion_px > 0:
        size = 2 * settings.erosion_px + 1
        eroded = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
        if np.count_nonzero(eroded) >= settings.min_points:  # a thin target keeps its own pixels
            mask = eroded
    ys, xs = np.nonzero(mask)
    z = depth_m[ys, xs]
    valid = np.isfinite(z)
    if np.count_nonzero(valid) < settings.min_points:
        return None
    xs, ys, z = xs[valid], ys[valid], z[valid]
    median = float(np.median(z))
    band = max(settings.band_mads * 1.4826 * float(np.median(np.abs(z - median))), settings.min_band_m)
    keep = np.abs(z - median) <= band
    xs, ys, z = xs[keep], ys[keep], z[keep]
    # Pixel indices are pixel centres, as in CameraInfo's (OpenCV's) K.
    points = np.stack([(xs - camera.cx) * z / camera.fx, (ys - camera.cy) * z / camera.fy, z], 1).astype(np.float32)
    return Target3D(points.mean(0).astype(np.float64), points.min(0).astype(np.float64),
                    points.max(0).astype(np.float64), points)
