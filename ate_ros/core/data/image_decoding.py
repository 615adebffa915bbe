"""The one decoder of camera messages into RGB arrays: bag conversion and the nodes use it.

Input: any object with the fields of ``sensor_msgs/Image`` (``encoding``, ``height``, ``width``,
``step``, ``is_bigendian``, ``data``) or ``sensor_msgs/CompressedImage`` (``format``, ``data``),
so rclpy messages, rosbags messages and plain namespaces all decode the same way. ``data`` may be
bytes, a memoryview, an ``array.array``, a uint8 numpy array or a list of ints.

Output: RGB uint8 ``(height, width, 3)``, C-contiguous. The channel order of each encoding
follows ``sensor_msgs/image_encodings`` and cv_bridge:

================  ===========================================================================
encoding          meaning
================  ===========================================================================
rgb8, rgba8       red first; alpha dropped
bgr8, bgra8       blue first (OpenCV order); alpha dropped
8UC3              three unnamed 8-bit channels; OpenCV images (``cv2_to_imgmsg`` with the
                  default ``passthrough``) are BGR, so it decodes as bgr8
mono8, 8UC1       one 8-bit channel, replicated into R, G and B
mono16, 16UC1     one 16-bit channel (byte order from ``is_bigendian``), scaled to 8 bits as
                  cv_bridge does (``value * 255 / 65535``, rounded), then replicated
================  ===========================================================================

Encoding names are matched case-insensitively (``RGB8`` is rgb8). Rows may be padded
(``step`` larger than ``width * bytes per pixel``). Compressed images are JPEG or PNG, in any
format string naming them (``jpeg``, ``png``, image_transport's ``rgb8; jpeg compressed bgr8``),
decoded with OpenCV.

Errors are :class:`ImageDecodeError` (a ValueError) saying what was wrong.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "COMPRESSED_FORMATS",
    "ENCODINGS",
    "ImageDecodeError",
    "decode_compressed",
    "decode_image",
    "decode_image_message",
    "resize_image",
]


class ImageDecodeError(ValueError):
    """A camera message cannot be decoded (unknown encoding, short data, corrupt bytes)."""


class _Layout(NamedTuple):
    channels: int
    bytes_per_channel: int
    rgb_index: tuple[int, ...]  # message channels that become R, G, B


_RGB, _BGR, _GREY = (0, 1, 2), (2, 1, 0), (0, 0, 0)
_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, 1, _RGB),
    "rgba8": _Layout(4, 1, _RGB),
    "bgr8": _Layout(3, 1, _BGR),
    "bgra8": _Layout(4, 1, _BGR),
    "8uc3": _Layout(3, 1, _BGR),
    "mono8": _Layout(1, 1, _GREY),
    "8uc1": _Layout(1, 1, _GREY),
    "mono16": _Layout(1, 2, _GREY),
    "16uc1": _Layout(1, 2, _GREY),
}
ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "16UC1")
"""``sensor_msgs/Image`` encodings :func:`decode_image` accepts (ROS spelling)."""
COMPRESSED_FORMATS = ("jpeg", "png")
"""``sensor_msgs/CompressedImage`` formats :func:`decode_compressed` accepts."""


def _bytes(data: Any) -> np.ndarray:
    """A flat uint8 view of a message's ``data`` without copying where the type allows."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.frombuffer(data.tobytes(), np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a list of ints (hand-built messages)
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def decode_image(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> RGB uint8 (H, W, 3), per the table in the module docstring.

    Raises:
        ImageDecodeError: Unsupported encoding, ``step`` too small, or too few data bytes.
    """
    layout = _LAYOUTS.get(str(msg.encoding).lower())
    if layout is None:
        raise ImageDecodeError(f"unsupported image encoding {msg.encoding!r}; supported: "
                               f"{list(ENCODINGS)}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * layout.channels * layout.bytes_per_channel
    if step < row:
        raise ImageDecodeError(f"image step {step} is smaller than width * bytes per pixel "
                               f"({row}) for {msg.encoding}")
    data = _bytes(msg.data)
    if data.size < h * step:
        raise ImageDecodeError(f"image data has {data.size} bytes, expected {h * step} "
                               f"({h} rows of {step})")
    rows = data[:h * step].reshape(h, step)[:, :row]
    if layout.bytes_per_channel == 2:
        dtype = ">u2" if int(getattr(msg, "is_bigendian", 0)) else "<u2"
        wide = np.ascontiguousarray(rows).view(dtype).astype(np.uint32)
        # cv_bridge's 16 -> 8 bit conversion: value * 255 / 65535 rounded, i.e. (v + 128) // 257.
        rows = ((wide + 128) // 257).astype(np.uint8)
    img = rows.reshape(h, w, layout.channels)
    if layout.rgb_index == _RGB and layout.channels == 3:
        # One copy (the message's buffer is not ours to hand on); a fancy index would copy
        # channel by channel, several times slower on every frame of the run-time path.
        return img.copy()
    return np.ascontiguousarray(img[:, :, list(layout.rgb_index)])


def decode_compressed(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> RGB uint8 (H, W, 3) via OpenCV.

    Raises:
        ImageDecodeError: A format other than JPEG/PNG, or bytes OpenCV cannot decode.
    """
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt or not any(f in fmt for f in ("jpeg", "jpg", "png")):
        raise ImageDecodeError(f"unsupported compressed format {msg.format!r}; supported: "
                               f"{list(COMPRESSED_FORMATS)}")
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - opencv is a core requirement
        raise ImageDecodeError("CompressedImage needs OpenCV: pip install "
                               "opencv-python-headless") from exc
    buf = _bytes(msg.data)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ImageDecodeError(f"OpenCV cannot decode the compressed image (format "
                               f"{msg.format!r}, {buf.size} bytes)")
    return np.ascontiguousarray(img[:, :, ::-1])  # OpenCV decodes to BGR


def decode_image_message(msg: Any, compressed: bool) -> np.ndarray:
    """:func:`decode_compressed` if ``compressed`` else :func:`decode_image`."""
    return decode_compressed(msg) if compressed else decode_image(msg)


def resize_image(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to ``width`` x ``height`` (area averaging, no crop);
    an image of that size already is returned as it is."""
    if img.shape[0] == height and img.shape[1] == width:
        return img
    import cv2

    return np.ascontiguousarray(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA))
