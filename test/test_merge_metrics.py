import numpy as np
import pytest

from shared_data import data_dir
from vos_ros.data import davis
from vos_ros.eval.metrics import evaluate_sequence, f_measure, jaccard
from vos_ros.inference.merge import merge_windows


def test_overlaps_go_to_the_higher_probability_and_scores_follow():
    a = np.full((10, 10), 0.9, np.float32)
    b = np.full((10, 10), 0.6, np.float32)
    b[:, 5:] = 0.95
    labels, scores = merge_windows([(a, (0, 0)), (b, (5, 0))], [3, 7], 20, 30, 0.5)
    assert labels.dtype == np.uint16 and labels.shape == (20, 30)
    assert (labels[:10, :5] == 3).all()  # only a
    assert (labels[:10, 5:10] == 3).all()  # a 0.9 beats b 0.6
    assert (labels[:10, 10:15] == 7).all()  # b 0.95 alone
    assert (labels[10:] == 0).all() and (labels[:, 15:] == 0).all()
    assert scores[3] == pytest.approx(0.9) and scores[7] == pytest.approx(0.95)


def test_claimed_pixels_go_to_the_claiming_id_above_threshold():
    a = np.full((10, 10), 0.9, np.float32)
    b = np.full((10, 10), 0.6, np.float32)
    b[:, 8:] = 0.3  # below threshold: claimed or not, background unless a wins
    claim = np.zeros((10, 10), bool)
    claim[:, :4] = True
    claim[:, 8:] = True
    labels, scores = merge_windows([(a, (0, 0)), (b, (5, 0))], [3, 7], 10, 20, 0.5, {7: claim})
    assert (labels[:, 5:9] == 7).all()  # claimed: b 0.6 beats a 0.9
    assert (labels[:, 9:10] == 3).all()  # not claimed: a 0.9 beats b 0.6
    assert (labels[:, 13:] == 0).all()  # claimed but below threshold
    assert scores[7] == pytest.approx(0.6) and scores[3] == pytest.approx(0.9)


def test_below_threshold_is_background():
    labels, scores = merge_windows([(np.full((4, 4), 0.4, np.float32), (1, 1))], [1], 8, 8, 0.5)
    assert labels.max() == 0 and scores[1] == 0.0


def test_metric_edge_cases():
    empty = np.zeros((20, 20), bool)
    assert jaccard(empty, empty) == 1.0 and f_measure(empty, empty) == 1.0
    full = np.zeros((20, 20), bool)
    full[5:15, 5:15] = True
    assert jaccard(full, full) == 1.0 and f_measure(full, full) == 1.0
    assert f_measure(empty, full) == 0.0


@pytest.mark.parametrize("split,seq", [("davis2016/dev", "car-shadow"), ("davis2017-multi/dev", "dogs-jump")])
def test_metrics_match_vos_benchmark_on_real_data(split, seq):
    from vos_benchmark.evaluator import Evaluator

    root = data_dir(*split.split("/"))
    gt = davis.read_ground_truth(root, seq)[:12]
    rng = np.random.default_rng(0)
    pred = []
    for g in gt:  # imperfect predictions: shifted, one object dropped now and then
        p = np.roll(g, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
        if rng.random() < 0.2:
            p[p == 1] = 0
        pred.append(p)
    ours = evaluate_sequence(pred, gt)
    ev = Evaluator(name=seq)
    for p, g in zip(pred[1:-1], gt[1:-1]):
        ev.feed_frame(p, g)
    iou, boundary = ev.conclude()
    assert ours.J == pytest.approx(np.mean(list(iou.values())) / 100, abs=1e-4)
    assert ours.F == pytest.approx(np.mean(list(boundary.values())) / 100, abs=1e-4)
