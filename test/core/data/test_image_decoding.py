"""One image decoder: a camera message decodes to the same RGB array in bag conversion and in
the nodes (``ate_ros.ros.conversions``), for every supported encoding.

The same serialized message (rclpy's CDR bytes) goes both ways: written into a real MCAP bag and
converted with ``convert_bags`` (rosbags deserialises it), and deserialised by rclpy and decoded
with ``image_to_numpy`` / ``compressed_to_numpy``. Both must equal the picture that was encoded.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ate_ros.core.data import image_decoding as D  # noqa: E402
from ate_ros.core.data import topics as T  # noqa: E402
from ate_ros.core.data.convert import ConversionSpec, convert_bags  # noqa: E402
from ate_ros.core.data.episode_format import read_episode  # noqa: E402
from ate_ros.core.embodiment import CameraSpec, Embodiment, JointSpec  # noqa: E402
from ate_ros.ros import conversions as cv  # noqa: E402

pytestmark = pytest.mark.ros

H, W = 12, 16
PAD = 4  # bytes of row padding in raw images (step > width * bytes per pixel)
NS = 1_000_000_000


def _reference() -> np.ndarray:
    """A smooth RGB picture whose three channels differ everywhere a swap could hide."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 15 + 10, y * 20 + 5, 200 - x * 5 - y * 4], axis=-1).astype(np.uint8)


def _grey16() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 65536, (H, W), dtype=np.uint16)


def _raw(encoding: str, pixels: np.ndarray, bigendian: bool = False) -> Image:
    """An rclpy Image of ``pixels`` (H, W[, C]) as they are laid out in memory, rows padded."""
    p = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = p.reshape(H, -1).view(np.uint8).reshape(H, -1)
    padded = np.concatenate([rows, np.full((H, PAD), 255, np.uint8)], axis=1)
    return Image(height=H, width=W, encoding=encoding, is_bigendian=int(bigendian),
                 step=padded.shape[1], data=padded.tobytes())


def _cases() -> dict[str, tuple[object, np.ndarray]]:
    """name -> (rclpy message, the RGB array both decoders must return)."""
    import cv2

    ref = _reference()
    alpha = np.full((H, W, 1), 77, np.uint8)
    grey = ref[..., 1]
    g16 = _grey16()
    # cv_bridge's 16 -> 8 bit scaling, computed independently of the decoder's integer form.
    g8 = np.rint(g16.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    ok_j, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(ref[..., ::-1]))
    ok_p, png = cv2.imencode(".png", np.ascontiguousarray(ref[..., ::-1]))
    assert ok_j and ok_p
    grey3 = np.repeat(grey[..., None], 3, axis=2)
    return {
        "rgb8": (_raw("rgb8", ref), ref),
        "bgr8": (_raw("bgr8", ref[..., ::-1]), ref),
        "rgba8": (_raw("rgba8", np.concatenate([ref, alpha], axis=2)), ref),
        "bgra8": (_raw("bgra8", np.concatenate([ref[..., ::-1], alpha], axis=2)), ref),
        # cv_bridge.cv2_to_imgmsg(bgr_array) publishes OpenCV's BGR memory as 8UC3.
        "8UC3": (_raw("8UC3", ref[..., ::-1]), ref),
        "mono8": (_raw("mono8", grey), grey3),
        "8UC1": (_raw("8UC1", grey), grey3),
        "mono16": (_raw("mono16", g16), np.repeat(g8[..., None], 3, axis=2)),
        "mono16_be": (_raw("mono16", g16, bigendian=True), np.repeat(g8[..., None], 3, axis=2)),
        "16UC1": (_raw("16UC1", g16), np.repeat(g8[..., None], 3, axis=2)),
        "jpeg": (CompressedImage(format="jpeg", data=jpeg.tobytes()), ref),
        "png": (CompressedImage(format="png", data=png.tobytes()), ref),
    }


def _ros_decode(msg: object) -> np.ndarray:
    """The node path: CDR bytes -> rclpy message -> ate_ros.ros.conversions."""
    kind = type(msg)
    back = deserialize_message(serialize_message(msg), kind)
    return cv.compressed_to_numpy(back) if kind is CompressedImage else cv.image_to_numpy(back)


def _write_bag(path, cases: dict[str, tuple[object, np.ndarray]]) -> None:
    """One MCAP bag: joint states plus one camera topic per case, rclpy's bytes verbatim."""
    from rosbags.rosbag2 import Writer

    from ate_ros.core.data.typestores import make_typestore

    ts = make_typestore()
    t0 = 100 * NS
    with Writer(path, version=9) as w:
        js = w.add_connection(T.JOINT_STATES_TOPIC, T.JOINT_STATE_TYPE, typestore=ts)
        conns = {}
        for name, (msg, _) in cases.items():
            mtype = T.COMPRESSED_IMAGE_TYPE if isinstance(msg, CompressedImage) else T.IMAGE_TYPE
            conns[name] = w.add_connection(f"/{_cam(name)}/image_raw", mtype, typestore=ts)
        for k in range(21):  # 1 s of joint states at 20 Hz, a frame on every camera with each
            t = t0 + k * NS // 20
            stamp = ts.types["builtin_interfaces/msg/Time"](sec=t // NS, nanosec=t % NS)
            header = ts.types["std_msgs/msg/Header"](stamp=stamp, frame_id="")
            joint = ts.types[T.JOINT_STATE_TYPE](
                header=header, name=["a"], position=np.zeros(1), velocity=np.zeros(0),
                effort=np.zeros(0))
            w.write(js, t, ts.serialize_cdr(joint, T.JOINT_STATE_TYPE))
            for name, (msg, _) in cases.items():
                msg.header.stamp.sec, msg.header.stamp.nanosec = t // NS, t % NS
                w.write(conns[name], t, bytes(serialize_message(msg)))


def _cam(name: str) -> str:
    return "cam_" + name.lower()


def test_bag_and_ros_paths_decode_identically(tmp_path):
    cases = _cases()
    bag = tmp_path / "encodings"
    _write_bag(bag, cases)
    emb = Embodiment(name="enc", joints=[JointSpec("a", 0, -1.0, 1.0)], control_rate_hz=10.0,
                     cameras=[CameraSpec(_cam(n), W, H) for n in cases])
    m = convert_bags([bag], emb, tmp_path / "out",
                     ConversionSpec(val_fraction=0, min_episode_frames=1))
    assert m.bags[0]["status"] == "ok", m.bags[0]["error"]
    ep = read_episode(tmp_path / "out" / m.splits["train"][0])
    for name, (msg, expected) in cases.items():
        from_bag = ep.images[_cam(name)]
        from_ros = _ros_decode(msg)
        assert from_ros.shape == (H, W, 3) and from_ros.dtype == np.uint8, name
        for frame in from_bag:
            np.testing.assert_array_equal(frame, from_ros, err_msg=name)
        if name == "jpeg":  # lossy: close to the picture, and the same bytes decode the same
            assert np.abs(from_ros.astype(int) - expected).mean() < 8
        else:
            np.testing.assert_array_equal(from_ros, expected, err_msg=name)


def test_decoder_accepts_every_data_container():
    """rosbags gives numpy arrays, rclpy array.array, hand-built messages lists or bytes."""
    import array
    from types import SimpleNamespace

    ref = _reference()
    raw = ref.tobytes()
    for data in (raw, memoryview(raw), array.array("B", raw), np.frombuffer(raw, np.uint8),
                 list(raw)):
        msg = SimpleNamespace(encoding="RGB8", height=H, width=W, step=W * 3, is_bigendian=0,
                              data=data)
        np.testing.assert_array_equal(D.decode_image(msg), ref)


def test_decoded_image_owns_its_pixels():
    """The decoded frame is a copy: writing to it leaves the message (still held by the
    synchroniser, maybe decoded again) as it was, for every container rclpy or rosbags gives."""
    import array

    ref = _reference()
    for data in (bytearray(ref.tobytes()), array.array("B", ref.tobytes()),
                 ref.reshape(-1).copy()):
        msg = Image(height=H, width=W, encoding="rgb8", step=W * 3)
        msg.data = data
        img = D.decode_image(msg)
        assert img.flags.owndata and img.flags.c_contiguous
        img[:] = 0
        np.testing.assert_array_equal(D.decode_image(msg), ref)


def test_decoder_errors_name_the_problem():
    ok = _raw("rgb8", _reference())
    with pytest.raises(D.ImageDecodeError, match="32FC1"):
        D.decode_image(Image(height=1, width=1, encoding="32FC1", step=4, data=b"\0" * 4))
    with pytest.raises(D.ImageDecodeError, match="step"):
        D.decode_image(Image(height=H, width=W, encoding="mono16", step=W, data=ok.data))
    with pytest.raises(D.ImageDecodeError, match="bytes"):
        D.decode_image(Image(height=H, width=W, encoding="rgb8", step=W * 3, data=b"\0" * 9))
    with pytest.raises(D.ImageDecodeError, match="compressedDepth"):
        D.decode_compressed(CompressedImage(format="16UC1; compressedDepth png", data=b"x"))
    with pytest.raises(D.ImageDecodeError, match="cannot decode"):
        D.decode_compressed(CompressedImage(format="jpeg", data=b"garbage"))
    with pytest.raises(cv.ConversionError, match="32FC1"):  # nodes see their own error type
        cv.image_to_numpy(Image(height=1, width=1, encoding="32FC1", step=4, data=b"\0" * 4))
