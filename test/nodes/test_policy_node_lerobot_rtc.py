"""policy_node serving a LeRobot SmolVLA checkpoint with ``chunking: rtc`` (real DDS): the node
loads it through the policy factory, turns on LeRobot's own RTC with the node's ``rtc.*``
settings, and every chunk after the first is sampled by LeRobot's RTCProcessor from the committed
prefix with the inference delay the chunk's ``takeover_index`` carries. A LeRobot policy without
RTC (DiffusionPolicy) fails to configure under ``chunking: rtc``, with the reason in the log.

The SmolVLA is tiny and random (test/support/lerobot_fixtures.py: a local SmolVLM backbone
folder, nothing downloaded).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from support.policy_node_graph import policy_node_graph
from support.waiting import wait_for

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("lerobot")
pytest.importorskip("num2words")  # transformers' SmolVLM processor needs it
pytestmark = [pytest.mark.ros, pytest.mark.slow]

H = 12  # points per chunk: 1.2 s at 10 Hz


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from support.lerobot_fixtures import tiny_diffusion_checkpoint, tiny_smolvla_checkpoint

    from ate_ros.core.embodiment import CameraSpec, Embodiment, JointSpec

    root = tmp_path_factory.mktemp("node_lerobot_rtc")
    emb = Embodiment(name="lr3", joints=[JointSpec(name=f"j{i}", slot=i, lower=-1.0, upper=1.0)
                                         for i in range(3)],
                     control_rate_hz=10.0, cameras=[CameraSpec(name="front", width=24,
                                                               height=24)])
    emb.to_yaml(root / "lr3.yaml")
    return {"emb": emb, "yaml": str(root / "lr3.yaml"),
            "smolvla": tiny_smolvla_checkpoint(root / "smolvla", emb, chunk_size=H),
            "diffusion": tiny_diffusion_checkpoint(root / "dp", emb)}


@pytest.fixture
def ros():
    """Policy nodes and a peer on one MultiThreadedExecutor
    (:func:`support.policy_node_graph.policy_node_graph`)."""
    from ate_ros.core.deploy import PolicyNodeConfig

    with policy_node_graph() as (make_node, peer):
        def make(node_name="policy_node", **cfg):
            return make_node(PolicyNodeConfig(**cfg), node_name=node_name)

        yield make, peer


def test_smolvla_checkpoint_runs_lerobots_rtc_in_the_node(world, ros):
    from ate_ros.core.steer.rtc import RTCConfig
    from ate_ros.msg import ActionChunk, Observation
    from ate_ros.ros import conversions as conv

    make, peer = ros
    emb = world["emb"]
    node = make(policy=f"lerobot:{world['smolvla']}", embodiment=world["yaml"],
                chunking="rtc", kinematics="joints", max_obs_age=5.0,
                rtc=RTCConfig(prefix_attention_schedule="linear", max_guidance_weight=3.0,
                              execution_horizon=8))
    node.trigger_configure()
    assert node.policy is not None and node.policy.model_id == "lerobot:smolvla"
    rtc = node.policy.policy.config.rtc_config  # LeRobot's, set from the node's rtc.*
    assert (rtc.enabled, rtc.prefix_attention_schedule.value, rtc.max_guidance_weight,
            rtc.execution_horizon) == (True, "LINEAR", 3.0, 8)
    processor = node.policy.policy.model.rtc_processor
    seen: list[tuple[int, tuple | None]] = []  # (inference_delay, leftover shape) per step
    denoise = processor.denoise_step

    def recording(x_t, prev_chunk_left_over, inference_delay, *args, **kwargs):
        seen.append((inference_delay, None if prev_chunk_left_over is None
                     else tuple(prev_chunk_left_over.shape)))
        return denoise(x_t, prev_chunk_left_over, inference_delay, *args, **kwargs)

    processor.denoise_step = recording  # LeRobot's own step, observed
    node.trigger_activate()
    got: list = []
    peer.create_subscription(ActionChunk, "action_chunk", got.append, 10)
    pub = peer.create_publisher(Observation, "observation", 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0, 20.0)
    img = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            now = peer.get_clock().now().nanoseconds * 1e-9
            pub.publish(conv.observation_to_msg({"front": img}, emb.joint_names,
                                                np.array([0.1, -0.2, 0.3]),
                                                conv.sec_to_time(now), "reach"))
            stop.wait(0.1)

    th = threading.Thread(target=stream, daemon=True)
    th.start()
    try:
        assert wait_for(lambda: len(got) >= 4, 60.0), f"{len(got)} chunks"
    finally:
        stop.set()
        th.join(timeout=5)
    node.trigger_deactivate()
    chunks = [m for m in got if "hold" not in m.model_id]
    # The warm-up and the first chunk (no plan yet) are sampled without a prefix.
    assert all(shape is None for _, shape in seen[:8]), seen[:8]
    later = [m.takeover_index for m in chunks[1:]]
    assert all(k >= 1 for k in later), later
    guided = [(d, shape) for d, shape in seen if shape is not None]
    # 4 denoising steps per chunk, each through LeRobot's RTC with a committed prefix of the
    # policy's D action columns; its delays are the takeover indices the chunks carry.
    assert len(guided) >= 4 * len(later)
    assert {shape[2] for _, shape in guided} == {emb.dof}
    assert set(later) <= {d for d, _ in guided}
    for m in chunks:
        chunk, _ = conv.msg_to_chunk(m, emb)
        assert chunk.shape == (H, emb.dof) and np.isfinite(chunk).all()


def test_policy_without_lerobot_rtc_fails_to_configure(world, ros):
    from rclpy.lifecycle import TransitionCallbackReturn

    make, _ = ros
    node = make(policy=f"lerobot:{world['diffusion']}", embodiment=world["yaml"],
                chunking="rtc", kinematics="joints")
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.policy is None
    ok = make(policy=f"lerobot:{world['diffusion']}", embodiment=world["yaml"],
              chunking="crossfade", kinematics="joints", node_name="policy_node_crossfade")
    ok.trigger_configure()
    assert ok.policy is not None and ok.policy.model_id == "lerobot:diffusion"
