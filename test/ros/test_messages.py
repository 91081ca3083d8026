import math

import numpy as np
import pytest
from std_msgs.msg import Header

from vos_ros.depth import Target3D
from vos_ros.inference.types import FrameResult, Stream, TargetResult, TargetStatus
from vos_ros.msg import TrackedObject, TrackedObjectArray
from vos_ros.ros import vision
from vos_ros.ros.image_conv import numpy_to_imgmsg
from vos_ros.ros.messages import labels_from_array, tracked_object_array
from vos_ros.srv import AddTargets, RemoveTargets, Reset


def test_constants_mirror_the_engine_enums():
    for status in TargetStatus:
        assert getattr(TrackedObject, f"STATUS_{status.name}") == status.value
    for stream in Stream:
        assert getattr(TrackedObject, f"STREAM_{stream.name}") == stream.value
    assert {"labels", "named_ids", "names"} <= set(AddTargets.Request.get_fields_and_field_types())
    assert {"success", "message", "tracked_ids"} <= set(RemoveTargets.Response.get_fields_and_field_types())
    assert "message" in Reset.Response.get_fields_and_field_types()


def _result():
    labels = np.zeros((40, 60), np.uint16)
    labels[5:15, 10:30] = 1
    labels[20:35, 40:50] = 3
    targets = [TargetResult(id=i, mask=labels == i, box=(0, 0, 1, 1), score=0.9, status=TargetStatus.TRACKING,
                            stream=Stream.BP, dm_confidence=0.95, area=int((labels == i).sum())) for i in (3, 1)]
    targets.append(TargetResult(id=7, mask=np.zeros_like(labels, bool), box=None, score=0.0,
                                status=TargetStatus.LOST, stream=Stream.BR, dm_confidence=0.95, area=0))
    return FrameResult(targets=targets, labels=labels, dm_confidence=0.95, stream=Stream.BP)


@pytest.mark.parametrize("mask_format", ["cropped", "full_frame"])
def test_array_conversion_round_trips_the_labels(mask_format):
    header = Header(frame_id="camera")
    header.stamp.sec = 12
    msg = tracked_object_array(_result(), header, {1: "cup"}, mask_format)
    assert isinstance(msg, TrackedObjectArray) and msg.header.stamp.sec == 12
    assert [o.id for o in msg.objects] == [1, 3, 7] and msg.objects[0].label == "cup"
    one = msg.objects[0]
    assert (one.box.x_offset, one.box.y_offset, one.box.width, one.box.height) == (10, 5, 20, 10)
    assert one.centroid.x == pytest.approx(19.5) and one.centroid.y == pytest.approx(9.5)
    if mask_format == "cropped":
        assert (one.mask_x_offset, one.mask_y_offset, one.mask.width, one.mask.height) == (10, 5, 20, 10)
    else:
        assert (one.mask.width, one.mask.height) == (60, 40)
    lost = msg.objects[2]
    assert lost.status == TrackedObject.STATUS_LOST and lost.mask.width == 0 and math.isnan(lost.centroid.x)
    np.testing.assert_array_equal(labels_from_array(msg), _result().labels)


def test_3d_fields_and_vision_msgs_detections():
    geometry = {1: Target3D(np.array([0.1, 0.2, 1.0]), np.array([0.0, 0.1, 0.9]), np.array([0.2, 0.3, 1.1]),
                            np.zeros((5, 3), np.float32))}
    header = Header(frame_id="camera_color_optical_frame")
    msg = tracked_object_array(_result(), header, {1: "cup"}, "cropped", geometry)
    one, three = msg.objects[0], msg.objects[1]
    assert one.has_3d and (one.position.x, one.position.z) == pytest.approx((0.1, 1.0))
    assert (one.box_3d_center.y, one.box_3d_size.z) == pytest.approx((0.2, 0.2))
    assert not three.has_3d and math.isnan(three.position.z) and math.isnan(three.box_3d_size.x)
    if not vision.AVAILABLE:
        pytest.skip("vision_msgs not installed (scripts/setup.sh builds it)")
    detections = vision.detection_2d_array(_result(), header, {1: "cup"})
    assert [d.id for d in detections.detections] == ["1", "3"]  # the lost target 7 is no detection
    first = detections.detections[0]
    assert (first.bbox.center.position.x, first.bbox.center.position.y, first.bbox.size_x) == (20.0, 10.0, 20.0)
    assert first.results[0].hypothesis.class_id == "cup" and first.header.frame_id == "camera_color_optical_frame"
    boxes = vision.detection_3d_array(_result(), header, {}, geometry)
    assert [d.id for d in boxes.detections] == ["1"]
    assert boxes.detections[0].bbox.center.position.z == pytest.approx(1.0)
    assert boxes.detections[0].results[0].pose.pose.position.y == pytest.approx(0.2)


def test_stream_score_holds_the_last_labels_over_skipped_frames():
    from vos_ros.ros.stream_score import StreamScore

    class FakeNode:
        def create_subscription(self, *args):
            self.callback = args[2]

    truth = [np.zeros((4, 4), np.uint16) for _ in range(4)]
    for labels in truth:
        labels[1:3, 1:3] = 1
    node = FakeNode()
    scorer = StreamScore(node, "vos/labels")
    published = numpy_to_imgmsg(truth[1], "mono16", Header())
    published.header.stamp.nanosec = 10
    node.callback(published)  # frame 1 tracked; frame 2 skipped (holds frame 1's); frame 3 never published
    score = scorer.score([0, 10, 20, 30], truth)
    assert score.per_object[1][0] == pytest.approx(1.0)  # frames 1 and 2 scored (first and last excluded)
    assert scorer.score([0, 30, 40, 50], truth).per_object[1][0] == pytest.approx(0.0)
