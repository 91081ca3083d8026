"""Depth to 3D (vos_ros/depth.py) on synthetic scenes of known geometry."""

import cv2
import numpy as np
import pytest

from vos_ros.depth import DepthError, Pinhole, depth_in_metres, target_3d

CAMERA = Pinhole(fx=525.0, fy=525.0, cx=319.5, cy=239.5, width=640, height=480)


def render(points_z, x_range, y_range, background_m=2.5):
    """Depth (metres) of a background wall with a planar patch spanning x_range, y_range (metres, at the
    patch's depth), the patch's depth at each pixel given by points_z(x) (x in metres)."""
    v, u = np.mgrid[0:CAMERA.height, 0:CAMERA.width].astype(np.float64)
    depth = np.full((CAMERA.height, CAMERA.width), background_m)
    # Cast each pixel's ray onto the patch: solve z = points_z(x) with x = (u - cx) z / fx, by iteration.
    z = np.ones_like(depth)
    for _ in range(50):
        z = points_z((u - CAMERA.cx) * z / CAMERA.fx)
    x, y = (u - CAMERA.cx) * z / CAMERA.fx, (v - CAMERA.cy) * z / CAMERA.fy
    inside = (x >= x_range[0]) & (x <= x_range[1]) & (y >= y_range[0]) & (y <= y_range[1])
    depth[inside] = z[inside]
    return depth.astype(np.float32), inside


def sloppy_mask(inside):
    """The patch's mask as a segmenter gives it: 2 px too wide (those pixels see the wall)."""
    return cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def test_fronto_parallel_patch_at_one_metre_with_holes_and_edges():
    rng = np.random.default_rng(0)
    depth, inside = render(lambda x: np.full_like(x, 1.0), (0.05, 0.25), (-0.15, 0.05))
    holes = rng.random(depth.shape) < 0.15
    depth[holes] = 0.0  # no reading
    mm = np.round(depth * 1000).astype(np.uint16)
    result = target_3d(sloppy_mask(inside), depth_in_metres(mm, "16UC1"), CAMERA)
    assert result is not None
    np.testing.assert_allclose(result.centroid, [0.15, -0.05, 1.0], atol=0.01)
    np.testing.assert_allclose(result.box_size[:2], [0.20, 0.20], atol=0.02)
    assert result.box_size[2] < 0.01 and len(result.points) > 1000


def test_slanted_patch_keeps_its_depth_extent():
    # A patch receding from 0.9 m to 1.1 m across its width (a box face seen at an angle).
    depth, inside = render(lambda x: 1.0 + (x + 0.1) * 1.0, (-0.2, 0.0), (0.0, 0.1))
    depth[~inside & (np.arange(depth.shape[1])[None] % 7 == 0)] = np.nan  # 32FC1 holes in the wall
    result = target_3d(sloppy_mask(inside), depth_in_metres(depth, "32FC1"), CAMERA)
    true = np.stack([d[inside] for d in np.meshgrid(np.arange(640), np.arange(480))], 1)
    z = depth[inside]
    expected = np.array([((true[:, 0] - CAMERA.cx) * z / CAMERA.fx).mean(),
                         ((true[:, 1] - CAMERA.cy) * z / CAMERA.fy).mean(), z.mean()])
    np.testing.assert_allclose(result.centroid, expected, atol=0.01)
    assert 0.17 < result.box_size[2] < 0.21  # the face's 0.2 m depth extent survives the band


def test_a_mask_without_depth_has_no_3d_and_bad_inputs_say_why():
    depth = np.zeros((480, 640), np.uint16)
    mask = np.zeros((480, 640), bool)
    mask[100:200, 100:200] = True
    assert target_3d(mask, depth_in_metres(depth, "16UC1"), CAMERA) is None
    with pytest.raises(DepthError, match="does not match the camera model"):
        target_3d(mask, np.ones((240, 320), np.float32), CAMERA)
    with pytest.raises(DepthError, match="encoding"):
        depth_in_metres(depth, "rgb8")
    with pytest.raises(DepthError, match="intrinsics"):
        Pinhole.from_k([0.0] * 9, 640, 480)


def test_mask_at_another_resolution_is_resized_to_the_depth_image():
    depth, inside = render(lambda x: np.full_like(x, 1.0), (-0.1, 0.1), (-0.1, 0.1))
    half = inside[::2, ::2]  # the mask at half the depth image's resolution
    result = target_3d(half, depth_in_metres(depth, "32FC1"), CAMERA)
    np.testing.assert_allclose(result.centroid, [0.0, 0.0, 1.0], atol=0.01)
