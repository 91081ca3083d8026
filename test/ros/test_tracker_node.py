"""The tracker node in this process with real rclpy: services, bad input, parameters, prompts, lifecycle."""

import time

import numpy as np
import pytest
import torch
from geometry_msgs.msg import Point32, PolygonStamped
from rcl_interfaces.srv import SetParameters
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from ros_test_helpers import CLIP, Harness, labels_request, spin_until

from vos_ros.ros.image_conv import numpy_to_imgmsg
from vos_ros.ros.tracker_node import TrackerNode
from vos_ros.srv import RemoveTargets, Reset


@pytest.fixture(scope="module")
def harness(weights_file):
    h = Harness(weights_file)
    assert spin_until(h.executor, lambda: h.images.get_subscription_count() > 0, 10)
    yield h
    h.close()


def test_add_on_a_past_frame_then_track(harness):
    assert harness.publish_and_wait(0).objects == []
    first = harness.publish(1)
    harness.publish_and_wait(2)
    response = harness.call(harness.add, labels_request(CLIP.labels[1], first.header.stamp, {1: "left"}))
    assert response.success, response.message
    assert sorted(response.added_ids) == [1, 2] and sorted(response.tracked_ids) == [1, 2]
    array = harness.publish_and_wait(3)
    assert [o.id for o in array.objects] == [1, 2] and array.objects[0].label == "left"
    assert array.image_width == 320 and array.objects[0].header.stamp == array.header.stamp


def test_bad_requests_answer_errors_and_change_nothing(harness):
    latest = harness.publish_and_wait(4)
    wrong_size = harness.call(harness.add, labels_request(np.ones((10, 10)), latest.header.stamp))
    assert not wrong_size.success and "nothing changed" in wrong_size.message
    for i in range(5, 12):  # push frame 4 out of the 6-frame ring
        harness.publish_and_wait(i)
    stale = harness.call(harness.add, labels_request(CLIP.labels[4], latest.header.stamp))
    assert not stale.success and "older than the oldest" in stale.message
    unknown = harness.call(harness.remove, RemoveTargets.Request(ids=[99]))
    assert not unknown.success and "99" in unknown.message and sorted(unknown.tracked_ids) == [1, 2]
    bad_encoding = numpy_to_imgmsg(CLIP.frames[12], "rgb8")
    bad_encoding.encoding = "yuv422"
    short = numpy_to_imgmsg(CLIP.frames[12], "rgb8")
    short.data = short.data[:-7]
    for bad in (bad_encoding, short):
        rejected = harness.tracker._rejected_images
        harness.publish(12, bad)
        assert spin_until(harness.executor, lambda: harness.tracker._rejected_images == rejected + 1, 10)
    assert [o.id for o in harness.publish_and_wait(13).objects] == [1, 2]


def test_parameters_live_and_rejected(harness):
    def set_param(name, value):
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return harness.call(harness.set_params, request).results[0]

    assert not set_param("theta_c", 1.5).successful
    assert set_param("theta_c", 0.9).successful
    assert harness.tracker._engine.theta_c == pytest.approx(0.9)
    assert not set_param("image_topic", "other").successful  # read-only: set at start
    assert not set_param("mask_format", "png").successful


def test_flood_is_survived_and_counted(harness):
    counts = harness.tracker.frame_counts
    dropped, published = counts()["frames_dropped"], counts()["frames_published"]
    for _ in range(3):
        for i in range(14, 34):
            harness.publish(i)
    last = harness.publish_and_wait(34)
    assert [o.id for o in last.objects] == [1, 2]
    # The newest frame is processed; the ones it overwrote are counted, not queued.
    assert counts()["frames_dropped"] > dropped
    assert counts()["frames_published"] - published < 61


def test_polygon_prompt_adds_a_target_and_remove_reset(harness):
    labels = CLIP.labels[35]
    ys, xs = np.nonzero(labels == 2)
    harness.publish_and_wait(35)
    polygon = PolygonStamped()
    polygon.header.stamp = harness.arrays[-1].header.stamp
    polygon.polygon.points = [Point32(x=float(x), y=float(y)) for x, y in
                              [(xs.min(), ys.min()), (xs.max(), ys.min()), (xs.max(), ys.max()), (xs.min(), ys.max())]]
    harness.polygons.publish(polygon)
    assert spin_until(harness.executor, lambda: 3 in harness.tracker._tracked_ids(), 20)
    removed = harness.call(harness.remove, RemoveTargets.Request(ids=[3]))
    assert removed.success and sorted(removed.tracked_ids) == [1, 2]
    assert harness.call(harness.reset, Reset.Request()).success
    assert harness.publish_and_wait(36).objects == []


def test_rqt_image_view_click_segments_the_clicked_object(harness):
    """An unstamped geometry_msgs/Point on point_topic, as rqt_image_view publishes a click, adds
    the object under it (learnt prompt segmenter, on the newest frame)."""
    import cv2
    from geometry_msgs.msg import Point

    from vos_ros.ros.messages import labels_from_array

    truth = CLIP.labels[36] == 1
    distance = cv2.distanceTransform(truth.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    harness.publish_and_wait(36)
    clicks = harness.node.create_publisher(Point, "vos/prompt/point", 10)
    assert spin_until(harness.executor, lambda: clicks.get_subscription_count() > 0, 10)
    clicks.publish(Point(x=float(x), y=float(y)))
    assert spin_until(harness.executor, lambda: harness.tracker._tracked_ids() == [1], 20)
    mask = labels_from_array(harness.publish_and_wait(37)) == 1
    assert (mask & (CLIP.labels[37] == 1)).sum() / (mask | (CLIP.labels[37] == 1)).sum() > 0.6
    assert harness.call(harness.reset, Reset.Request()).success
    harness.node.destroy_publisher(clicks)


def test_lifecycle_releases_and_reloads_the_model(harness):
    assert harness.tracker.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert harness.tracker._engine is None
    inactive = harness.call(harness.reset, Reset.Request())
    assert not inactive.success and "not active" in inactive.message
    assert harness.tracker.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert harness.tracker._engine is not None
    assert harness.publish_and_wait(37).objects == []


def test_unavailable_backend_falls_back_as_configured(ctx, weights_file):
    try:
        import tensorrt  # noqa: F401

        if torch.cuda.is_available():
            pytest.skip("TensorRT and a GPU are present: backend tensorrt needs no fallback here")
    except ImportError:
        pass
    for fallback, outcome in (("torch", TransitionCallbackReturn.SUCCESS), ("none", TransitionCallbackReturn.FAILURE)):
        overrides = [Parameter("autostart", value=False), Parameter("backend", value="tensorrt"),
                     Parameter("backend_fallback", value=fallback)]
        if weights_file:
            overrides.append(Parameter("weights", value=weights_file))
        node = TrackerNode(context=ctx, parameter_overrides=overrides)
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_activate() == outcome
            assert "tensorrt" in node._last_error.lower()
            if fallback == "torch":
                assert node._engine.backend.name == "torch" and node._engine.device.type == "cpu"
            else:
                assert node._engine is None
        finally:
            node.stop_worker()
            node.destroy_node()


def test_adaptation_runs_in_the_background_while_frames_flow(weights_file):
    """With adaptation on (the configuration's 50 steps), the add answers and the stream is tracked
    with the offline MRN while the fit runs; the adapted MRN is then swapped in between frames."""
    h = Harness(weights_file, (Parameter("adaptation_iterations", value=-1),))
    try:
        assert spin_until(h.executor, lambda: h.images.get_subscription_count() > 0, 10)
        first = h.publish(0)
        h.publish_and_wait(1)
        response = h.call(h.add, labels_request(CLIP.labels[0], first.header.stamp))
        assert response.success, response.message
        engine = h.tracker._engine
        # Bounded by time, not frames: how many frames the fit spans depends on the machine's
        # cores (two on CI, shared by the stream and the fit).
        deadline = time.monotonic() + 240
        tracked_while_fitting = frames = 0
        while engine.last_adaptation is None and time.monotonic() < deadline:
            tracked_while_fitting += [o.id for o in h.publish_and_wait(2 + frames % 38).objects] == [1, 2]
            frames += 1
        assert tracked_while_fitting > 0
        assert engine.last_adaptation is not None and engine.last_adaptation.target_ids == [1, 2]
        assert [o.id for o in h.publish_and_wait(3).objects] == [1, 2]
    finally:
        h.close()
