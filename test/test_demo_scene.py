"""The embedded demo scene (data/demo_scene.py): deterministic, and the events it promises."""

import numpy as np

from vos_ros.data.demo_scene import EXIT_SHARE, OCCLUSION_SHARE, RETURN_SHARE, demo_scene

FRAMES = 30


def test_scene_is_deterministic_and_has_its_events():
    clip, again = demo_scene(FRAMES, (427, 240)), demo_scene(FRAMES, (427, 240))
    assert all(np.array_equal(a, b) for a, b in zip(clip.frames, again.frames))
    assert all(np.array_equal(a, b) for a, b in zip(clip.labels, again.labels))
    assert clip.frames[0].shape == (240, 427, 3) and set(np.unique(clip.labels[0])) == {0, 1, 2, 3}
    areas = np.array([[np.count_nonzero(labels == k) for k in (1, 2, 3)] for labels in clip.labels])
    t = np.arange(FRAMES) / (FRAMES - 1)
    gone = (t > EXIT_SHARE) & (t < RETURN_SHARE)
    assert (areas[gone, 1] == 0).all() and areas[0, 1] > 0 and areas[-1, 1] > 0  # the face leaves and returns
    occluded = np.argmin(np.abs(t - OCCLUSION_SHARE))
    assert areas[occluded, 2] < 0.8 * areas[0, 2]  # the sign behind the cup
    assert areas[:, 0].min() > 0.9 * areas[0, 0]  # the cup stays in view, on top
