"""Decoding the camera frames a bag's episodes use, each message once.

Only the image messages that kept ticks refer to are decoded (with the shared decoder of
:mod:`ate_ros.core.data.image_decoding`) and resized to the camera's size; payloads the read pass
did not keep (beyond ``image_memory_mb``) are read from the bag again first. A frame that fails
to decode is dropped from its stream with a reason, so the caller aligns again without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ate_ros.core.data import topics as T
from ate_ros.core.data.convert.spec import DROP_DECODE
from ate_ros.core.data.convert.streams import BagStreams
from ate_ros.core.data.image_decoding import decode_image_message, resize_image

Frames = dict[tuple[str, int], np.ndarray]
"""(camera topic, message index) -> RGB uint8 (height, width, 3) at the camera's size."""


def decode_frames(bs: BagStreams, episodes: list[dict[str, Any]]) -> tuple[Frames, int]:
    """Decode each image message a kept tick of ``episodes`` uses.

    Returns:
        The decoded frames and how many messages failed to decode (dropped from their streams
        with ``decode_error``, and a warning naming the first).
    """
    need: dict[str, set[int]] = {s.topic: set() for _, s, _ in bs.cameras}
    for ep in episodes:
        for row, ticks in ep["parts"]:
            for topic in need:
                need[topic].update(row[topic][ticks].tolist())
    if bs.reread and any(need.values()):
        _reread(bs, need)
    frames: Frames = {}
    failed = []
    for cam, s, mtype in bs.cameras:
        for i in sorted(need[s.topic]):
            try:
                msg = bs.bag.deserialize(s.payload[i], mtype)
                img = decode_image_message(msg, mtype == T.COMPRESSED_IMAGE_TYPE)
                frames[(s.topic, i)] = resize_image(img, cam.width, cam.height)
            except Exception as exc:  # any decoder failure drops the frame, with its reason
                failed.append((s, i, exc))
    for s, i, _exc in failed:
        s.drop([i], DROP_DECODE)
    if failed:
        s, i, exc = failed[0]
        bs.warnings.append(f"{len(failed)} images could not be decoded (first: {s.topic} "
                           f"#{i}: {exc}); dropped")
    return frames, len(failed)


def _reread(bs: BagStreams, need: dict[str, set[int]]) -> None:
    """Fill in the payloads of needed messages that the read pass did not keep."""
    want = {t: {i for i in ids if bs.streams[t].payload[i] is None} for t, ids in need.items()}
    counters = dict.fromkeys(want, -1)
    for topic, _, raw in bs.bag.messages([t for t, w in want.items() if w]):
        counters[topic] += 1
        if counters[topic] in want[topic]:
            bs.streams[topic].payload[counters[topic]] = raw
