"""sensor_msgs/Image <-> numpy without cv_bridge.

The PyPI ``cv-bridge`` is a ROS 1 port that breaks on numpy 2 / OpenCV 5,
decodes 16UC1 as uint8 and ignores row padding, so the conversion is done here.
Decoding honours ``step`` (row padding) and ``is_bigendian``; encoding always
assigns ``bytes`` to ``Image.data`` (a memoryview or ndarray costs ~40 ms per
VGA frame in rclpy).
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
LABEL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1")


class ImageConversionError(ValueError):
    """The message cannot be read as the requested kind of image."""


def imgmsg_to_numpy(msg: Image, copy: bool = False) -> np.ndarray:
    """(H, W) or (H, W, C) array viewing ``msg.data`` (zero-copy unless padded,
    byte-swapped or ``copy``)."""
    if msg.encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported encoding '{msg.encoding}' (supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[msg.encoding]
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.width == 0 or msg.height == 0:
        raise ImageConversionError(f"empty image {msg.width}x{msg.height}")
    if msg.step < row_bytes:
        raise ImageConversionError(f"step {msg.step} is smaller than width*channels*bytes = {row_bytes}")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size != msg.step * msg.height:
        raise ImageConversionError(
            f"data has {buf.size} bytes but step*height = {msg.step}*{msg.height} = {msg.step * msg.height}"
        )
    rows = buf.reshape(msg.height, msg.step)
    if msg.step != row_bytes:
        rows = rows[:, :row_bytes]
    wire_dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    arr = np.ascontiguousarray(rows).view(wire_dtype)
    if wire_dtype != dtype.newbyteorder("="):
        arr = arr.astype(dtype)
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    arr = arr.reshape(shape)
    return arr.copy() if copy else arr


def numpy_to_imgmsg(arr: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported encoding '{encoding}'")
    dtype, channels = ENCODINGS[encoding]
    arr = np.asarray(arr)
    got_channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.ndim not in (2, 3) or got_channels != channels or arr.dtype != dtype:
        raise ImageConversionError(
            f"{encoding} needs {channels} channel(s) of {dtype}, got shape {arr.shape} of {arr.dtype}"
        )
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big")
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = np.ascontiguousarray(arr).tobytes()
    return msg


def imgmsg_to_rgb(msg: Image) -> np.ndarray:
    """Camera image as an owned (H, W, 3) uint8 RGB array."""
    arr = imgmsg_to_numpy(msg)
    enc = msg.encoding
    if enc in ("rgb8", "8UC3"):
        return arr.copy()
    if enc == "bgr8":
        return np.ascontiguousarray(arr[..., ::-1])
    if enc == "rgba8":
        return np.ascontiguousarray(arr[..., :3])
    if enc == "bgra8":
        return np.ascontiguousarray(arr[..., 2::-1])
    if enc in ("mono8", "8UC1"):
        return np.repeat(arr[..., None], 3, axis=2)
    raise ImageConversionError(f"encoding '{enc}' is not a colour camera image (use rgb8, bgr8, rgba8, bgra8 or mono8)")


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """A compressed camera image (image_transport's `compressed`: jpeg or png) as (H, W, 3) uint8 RGB."""
    fmt = msg.format.lower()
    if "compresseddepth" in fmt or not any(f in fmt for f in ("jpeg", "jpg", "png")):
        raise ImageConversionError(f"compressed format '{msg.format}' is not a jpeg or png colour image")
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        raise ImageConversionError("compressed image has no data")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)  # grey and 16-bit images come back as 8-bit BGR
    if bgr is None:
        raise ImageConversionError(f"compressed image ({data.size} bytes, format '{msg.format}') does not decode")
    return np.ascontiguousarray(bgr[..., ::-1])


def imgmsg_to_labels(msg: Image) -> np.ndarray:
    """Label image (pixel = target id, 0 = background) as an owned (H, W) uint16 array."""
    if msg.encoding not in LABEL_ENCODINGS:
        raise ImageConversionError(
            f"label image encoding '{msg.encoding}' is not one of {', '.join(LABEL_ENCODINGS)}"
        )
    return imgmsg_to_numpy(msg).astype(np.uint16)
