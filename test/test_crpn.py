import math

import pytest
import torch

from vos_ros.model.crpn import conditional_anchors, decode_boxes, encode_boxes, match_distance, select_candidates


def test_81_anchors_on_3x3_cells_around_previous_centre():
    prev = (100.0, 60.0, 180.0, 100.0)  # centre (140, 80), w 80, h 40
    anchors = conditional_anchors(prev, stride=16, grid=3, multipliers=(0.5, 1.0, 1.5))
    assert anchors.shape == (81, 4)
    centres = torch.stack([(anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2], 1)
    cell_x, cell_y = math.floor(140 / 16), math.floor(80 / 16)
    expected_x = {(cell_x + d + 0.5) * 16 for d in (-1, 0, 1)}
    expected_y = {(cell_y + d + 0.5) * 16 for d in (-1, 0, 1)}
    assert set(centres[:, 0].round().tolist()) == {round(v) for v in expected_x}
    assert set(centres[:, 1].round().tolist()) == {round(v) for v in expected_y}
    w, h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    scales = sorted({round(v, 3) for v in (w * h).sqrt().tolist()})
    base = math.sqrt(80 * 40)
    assert scales == pytest.approx([0.5 * base, base, 1.5 * base], rel=1e-3)
    ratios = sorted({round(v, 3) for v in (w / h).tolist()})
    assert ratios == pytest.approx([1.0, 2.0, 3.0], rel=1e-3)  # {0.5, 1, 1.5} x previous ratio 2


def test_anchor_cells_stop_at_the_feature_map():
    anchors = conditional_anchors((0.0, 0.0, 20.0, 20.0), stride=16, grid=3, multipliers=(1.0,), map_size=(14, 14))
    assert anchors.shape == (4, 4)  # cells -1 are outside: a 2x2 corner remains
    wide = conditional_anchors((100.0, 100.0, 120.0, 120.0), 16, grid=61, multipliers=(1.0,), map_size=(14, 14))
    assert wide.shape == (14 * 14, 4)


def test_box_coding_round_trip():
    anchors = torch.tensor([[10.0, 10.0, 50.0, 30.0], [0.0, 0.0, 8.0, 16.0]])
    boxes = torch.tensor([[12.0, 8.0, 60.0, 35.0], [1.0, 2.0, 9.0, 12.0]])
    assert torch.allclose(decode_boxes(anchors, encode_boxes(anchors, boxes)), boxes, atol=1e-4)


def test_eq2_smallest_distance_wins_and_nms_selection():
    first = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=1)[0]
    prev = torch.nn.functional.normalize(torch.tensor([[0.9, 0.1, 0.0]]), dim=1)[0]
    cands = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.05, 0.0], [0.0, 0.0, 1.0]]), dim=1)
    assert int(match_distance(cands, first, prev).argmin()) == 1
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.5, 0.5, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0, 0, 0.5, 0.5]])
    keep = select_candidates(boxes, torch.tensor([0.9, 0.8, 0.7, 0.99]), top_n=5, nms_iou=0.7, min_objectness=0.1)
    assert keep.tolist() == [0, 2]  # 1 suppressed by NMS, 3 degenerate


def test_cell_step_thins_a_wide_search():
    wide = conditional_anchors((100.0, 100.0, 120.0, 120.0), 16, grid=29, multipliers=(1.0,), map_size=(14, 14), cell_step=3)
    assert 16 <= wide.shape[0] <= 25  # every third cell of the 14x14 map
