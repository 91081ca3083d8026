import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from vos_ros.ros.image_conv import (ImageConversionError, compressed_to_rgb, imgmsg_to_labels, imgmsg_to_numpy,
                                    imgmsg_to_rgb, numpy_to_imgmsg)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("encoding,shape,dtype", [
    ("rgb8", (48, 64, 3), np.uint8), ("bgr8", (48, 64, 3), np.uint8), ("mono8", (48, 64), np.uint8),
    ("mono16", (48, 64), np.uint16), ("16UC1", (48, 64), np.uint16), ("32FC1", (48, 64), np.float32),
])
def test_round_trip(encoding, shape, dtype):
    arr = (RNG.random(shape) * 200).astype(dtype)
    msg = numpy_to_imgmsg(arr, encoding)
    assert isinstance(msg.data, (bytes, bytearray)) or len(msg.data) == arr.nbytes
    np.testing.assert_array_equal(imgmsg_to_numpy(msg), arr)


def test_colour_orders_become_rgb():
    rgb = RNG.integers(0, 255, (8, 10, 3), dtype=np.uint8)
    np.testing.assert_array_equal(imgmsg_to_rgb(numpy_to_imgmsg(rgb[..., ::-1].copy(), "bgr8")), rgb)
    bgra = np.dstack([rgb[..., ::-1], np.full((8, 10), 255, np.uint8)])
    np.testing.assert_array_equal(imgmsg_to_rgb(numpy_to_imgmsg(bgra, "bgra8")), rgb)


def test_padded_rows_and_big_endian():
    arr = RNG.integers(0, 60000, (5, 7), dtype=np.uint16)
    padded = np.zeros((5, 16), np.uint16)
    padded[:, :7] = arr
    msg = Image(height=5, width=7, encoding="16UC1", is_bigendian=1, step=32,
                data=padded.astype(">u2").tobytes())
    np.testing.assert_array_equal(imgmsg_to_labels(msg), arr)


@pytest.mark.parametrize("change,match", [
    (dict(encoding="yuv422"), "unsupported encoding"),
    (dict(data=b"\x00" * 10), "data has 10 bytes"),
    (dict(step=3), "step 3 is smaller"),
    (dict(width=0), "empty image"),
])
def test_bad_messages_raise_clear_errors(change, match):
    msg = numpy_to_imgmsg(np.zeros((4, 6, 3), np.uint8), "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError, match=match):
        imgmsg_to_rgb(msg)


def test_label_image_must_be_mono():
    with pytest.raises(ImageConversionError, match="label image encoding"):
        imgmsg_to_labels(numpy_to_imgmsg(np.zeros((4, 6, 3), np.uint8), "rgb8"))


def test_compressed_png_and_jpeg_become_rgb_and_bad_data_is_rejected():
    rgb = RNG.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    np.testing.assert_array_equal(compressed_to_rgb(CompressedImage(format="png", data=png)), rgb)
    smooth = np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 24, 0).repeat(3, 2)
    jpeg = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    decoded = compressed_to_rgb(CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg))
    assert decoded.shape == (24, 32, 3) and np.abs(decoded.astype(int) - smooth).max() < 8
    for bad, why in ((CompressedImage(format="jpeg", data=b"garbage"), "does not decode"),
                     (CompressedImage(format="jpeg", data=b""), "no data"),
                     (CompressedImage(format="16UC1; compressedDepth png", data=png), "not a jpeg or png colour"),
                     (CompressedImage(format="theora", data=png), "not a jpeg or png colour")):
        with pytest.raises(ImageConversionError, match=why):
            compressed_to_rgb(bad)
