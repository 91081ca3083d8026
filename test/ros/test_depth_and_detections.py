"""The tracker node with compressed images, aligned depth and CameraInfo: TrackedObject 3D fields,
vision_msgs Detection2DArray / Detection3DArray, the targets' PointCloud2, CameraInfo passthrough."""

import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter
from ros_test_helpers import CLIP, Harness, labels_request, spin_until
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from vos_ros.ros import vision
from vos_ros.ros.image_conv import numpy_to_imgmsg
from vos_ros.ros.qos import OUTPUT_QOS

pytestmark = pytest.mark.skipif(not vision.AVAILABLE, reason="vision_msgs not installed (scripts/setup.sh builds it)")

FOCAL, CX, CY = 300.0, 159.5, 119.5
OBJECT_DEPTH_M = {1: 0.8, 2: 1.2}  # the clip's two objects; the background wall at 3 m


def depth_image(index: int) -> np.ndarray:
    depth = np.full(CLIP.labels[index].shape, 3000, np.uint16)
    for target_id, metres in OBJECT_DEPTH_M.items():
        depth[CLIP.labels[index] == target_id] = int(metres * 1000)
    depth[::9, ::7] = 0  # holes
    return depth


def compressed(index: int) -> CompressedImage:
    ok, data = cv2.imencode(".jpg", CLIP.frames[index][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return CompressedImage(format="rgb8; jpeg compressed bgr8", data=data.tobytes())


def test_compressed_images_with_depth_give_3d_and_detections(weights_file):
    h = Harness(weights_file, (Parameter("image_transport", value="compressed"),
                               Parameter("depth_topic", value="depth"), Parameter("publish_points", value=True)))
    try:
        images = h.node.create_publisher(CompressedImage, "image/compressed", OUTPUT_QOS)
        depths = h.node.create_publisher(Image, "depth", OUTPUT_QOS)
        infos = h.node.create_publisher(CameraInfo, "camera_info", OUTPUT_QOS)
        received = {kind: [] for kind in ("2d", "3d", "points", "info", "markers")}
        for kind, msg_type, topic in (("2d", vision.Detection2DArray, "vos/detections"),
                                      ("3d", vision.Detection3DArray, "vos/detections_3d"),
                                      ("points", PointCloud2, "vos/points"), ("info", CameraInfo, "vos/camera_info"),
                                      ("markers", MarkerArray, "vos/markers")):
            h.node.create_subscription(msg_type, topic, received[kind].append, 50)
        assert spin_until(h.executor, lambda: images.get_subscription_count() > 0 and infos.get_subscription_count() > 0
                          and depths.get_subscription_count() > 0, 10)
        info = CameraInfo(width=320, height=240, k=[FOCAL, 0.0, CX, 0.0, FOCAL, CY, 0.0, 0.0, 1.0])

        def send(index, image=None, depth_encoding="16UC1", with_info=True, depth_step=1):
            stamp = h.node.get_clock().now().to_msg()
            info.header.stamp = stamp
            if with_info:
                infos.publish(info)
            depth = numpy_to_imgmsg(depth_image(index)[::depth_step, ::depth_step].copy(), "16UC1")
            depth.encoding, depth.header.stamp = depth_encoding, stamp
            depths.publish(depth)
            msg = image or compressed(index)
            msg.header.stamp = stamp
            images.publish(msg)
            return stamp

        def answer(stamp):
            assert spin_until(h.executor, lambda: any(a.header.stamp == stamp for a in h.arrays), 20)
            return next(a for a in h.arrays if a.header.stamp == stamp)

        first = send(0, with_info=False)  # no CameraInfo yet: published without 3D, logged
        answer(first)
        assert "CameraInfo" in h.tracker._last_error
        assert h.call(h.add, labels_request(CLIP.labels[0], first)).success
        for i in range(1, 5):
            last = send(i)
            array = answer(last)
        for obj in array.objects:
            assert obj.has_3d
            assert obj.position.z == pytest.approx(OBJECT_DEPTH_M[obj.id], abs=0.01)
            ys, xs = np.nonzero(CLIP.labels[4] == obj.id)
            z = OBJECT_DEPTH_M[obj.id]
            assert obj.position.x == pytest.approx((xs.mean() - CX) * z / FOCAL, abs=0.05)
            assert obj.position.y == pytest.approx((ys.mean() - CY) * z / FOCAL, abs=0.05)
        def stamp(msg):
            return msg.markers[0].header.stamp if isinstance(msg, MarkerArray) else msg.header.stamp

        assert spin_until(h.executor, lambda: all(any(stamp(m) == last for m in received[k]) for k in received))
        d2 = next(m for m in received["2d"] if m.header.stamp == last)
        by_id = {o.id: o for o in array.objects}
        assert sorted(d.id for d in d2.detections) == ["1", "2"]
        for d in d2.detections:
            box = by_id[int(d.id)].box
            assert d.bbox.center.position.x == pytest.approx(box.x_offset + box.width / 2)
            assert d.bbox.size_y == pytest.approx(box.height)
            assert d.results[0].hypothesis.score == pytest.approx(by_id[int(d.id)].score)
        d3 = next(m for m in received["3d"] if m.header.stamp == last)
        for d in d3.detections:
            assert d.results[0].pose.pose.position.z == pytest.approx(by_id[int(d.id)].position.z)
            assert d.bbox.size.z < 0.05  # each object is a flat patch
        cloud = next(m for m in received["points"] if m.header.stamp == last)
        points = np.frombuffer(bytes(cloud.data), vision._POINT_DTYPE)
        assert cloud.width == len(points) > 100 and set(np.unique(points["id"])) == {1, 2}
        assert np.allclose(points["z"][points["id"] == 1], 0.8, atol=0.01)
        assert next(m for m in received["info"] if m.header.stamp == last).k[0] == FOCAL
        markers = next(m for m in received["markers"] if m.markers[0].header.stamp == last).markers
        assert markers[0].action == Marker.DELETEALL and len(markers) == 1 + 3 * 2
        spheres = {m.id // 3: m for m in markers if m.type == Marker.SPHERE}
        assert spheres[1].pose.position.z == pytest.approx(by_id[1].position.z)

        # Bad input: undecodable jpeg (rejected, counted), a depth image in a colour encoding (frame
        # published without 3D, logged); the node goes on.
        rejected = h.tracker._rejected_images
        send(5, CompressedImage(format="jpeg", data=b"\xff\xd8 not a jpeg"))
        assert spin_until(h.executor, lambda: h.tracker._rejected_images == rejected + 1, 10)
        bad_depth = answer(send(6, depth_encoding="rgb8"))
        assert [o.id for o in bad_depth.objects] == [1, 2] and not any(o.has_3d for o in bad_depth.objects)
        assert "depth encoding" in h.tracker._last_error
        wrong_size = answer(send(7, depth_step=2))  # 160x120 depth against a 320x240 camera model
        assert [o.id for o in wrong_size.objects] == [1, 2] and not any(o.has_3d for o in wrong_size.objects)
        assert "does not match the camera model" in h.tracker._last_error
        assert all(o.has_3d for o in answer(send(8)).objects)
    finally:
        h.close()
