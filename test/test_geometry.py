import numpy as np
import pytest
import torch
from torchvision.ops import roi_align

from vos_ros.model.geometry import Region, box_iou, crop_roi, enlarge_box, mask_box, paste_roi


def _mask():
    m = np.zeros((100, 120), np.float32)
    m[20:60, 30:90] = 1
    m[35:45, 50:55] = 0
    return m


def test_mask_box_is_tight_and_exclusive():
    assert mask_box(_mask()) == (30, 20, 90, 60)
    assert mask_box(np.zeros((5, 5))) is None
    # at half resolution the box is reported in frame pixels
    assert mask_box(_mask()[::2, ::2], scale=0.5) == (30, 20, 90, 60)


def test_crop_roi_equals_roialign_aligned():
    m = _mask()
    box = (25.3, 15.7, 95.2, 66.1)
    ours = crop_roi(m, box, 56)
    ref = roi_align(torch.from_numpy(m)[None, None], torch.tensor([[0, *box]], dtype=torch.float32), (56, 56),
                    spatial_scale=1.0, sampling_ratio=1, aligned=True)[0, 0].numpy()
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("box", [(25.3, 15.7, 95.2, 66.1), (28.0, 18.0, 92.0, 62.0), (-10.0, -5.0, 100.0, 70.0)])
def test_paste_inverts_crop(box):
    m = _mask()
    roi = crop_roi(m, box, 112)
    window, (x, y) = paste_roi(roi, box, *m.shape)
    full = np.zeros_like(m)
    full[y:y + window.shape[0], x:x + window.shape[1]] = window
    inter = ((full > 0.5) & (m > 0.5)).sum()
    union = ((full > 0.5) | (m > 0.5)).sum()
    assert inter / union > 0.97


def test_paste_window_is_clipped_to_frame():
    window, (x, y) = paste_roi(np.ones((56, 56), np.float32), (-20.0, 90.0, 40.0, 130.0), 100, 120)
    assert (x, y) == (0, 90)
    assert window.shape == (10, 40)


def test_region_maps_boxes_both_ways_and_crops():
    region = Region.around((100, 50, 140, 130), scale=2.0, min_side=32, max_side=854, size=224)
    assert region.side == 160 and region.k == pytest.approx(224 / 160)
    box = (110.0, 60.0, 130.0, 90.0)
    assert region.to_frame(region.to_input(box)) == pytest.approx(box)
    image = np.zeros((480, 854, 3), np.uint8)
    image[50:130, 100:140] = 255
    crop = region.crop(image, np.zeros(3))
    assert crop.shape == (224, 224, 3)
    inside = region.to_input((100, 50, 140, 130))
    cx, cy = int((inside[0] + inside[2]) / 2), int((inside[1] + inside[3]) / 2)
    assert crop[cy, cx].min() == 255 and crop[2, 2].max() == 0


def test_box_helpers():
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou(None, (0, 0, 1, 1)) == 0.0
    assert enlarge_box((0, 0, 10, 20), 0.2) == pytest.approx((-1, -2, 11, 22))
