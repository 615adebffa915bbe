"""A LeRobot DiffusionPolicy checkpoint behind our ChunkPolicy contract: the chunk it predicts
from our Observation is LeRobot's own select_action output, written into the embodiment's slots."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("lerobot")

from ate_ros.core.embodiment import UNIFIED_DIM, CameraSpec, Embodiment, JointSpec  # noqa: E402
from ate_ros.core.lerobot_compat import require_lerobot  # noqa: E402
from ate_ros.core.policy_io import ChunkPolicy, PolicyObservation  # noqa: E402
from ate_ros.core.steer.lerobot_policy import LeRobotChunkPolicy  # noqa: E402

require_lerobot()
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy  # noqa: E402
from lerobot.policies.factory import make_pre_post_processors  # noqa: E402
from test_lerobot_steer import tiny_diffusion_config  # noqa: E402

EMB = Embodiment(name="lr2", joints=[JointSpec(name=f"j{i}", slot=s, lower=-1.0, upper=1.0)
                                     for i, s in enumerate([3, 10])],
                 control_rate_hz=10.0, cameras=[CameraSpec(name="front", width=16, height=16)])
STATS = {"observation.state": {"min": torch.tensor([-1.0, -1.0]), "max": torch.tensor([1.0, 0.5])},
         "action": {"min": torch.tensor([-1.0, -0.5]), "max": torch.tensor([1.0, 0.5])},
         "observation.images.front": {"mean": torch.full((3, 1, 1), 0.5),
                                      "std": torch.full((3, 1, 1), 0.2)}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_diffusion_config(EMB.dof)
    pre, post = make_pre_post_processors(cfg, dataset_stats=STATS)
    out = tmp_path_factory.mktemp("lrpol") / "ckpt"
    DiffusionPolicy(cfg).save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


def _obs(k: int) -> PolicyObservation:
    q = np.zeros(UNIFIED_DIM, np.float32)
    q[EMB.slots] = [0.2 + 0.01 * k, -0.3]
    img = np.full((16, 16, 3), 30 + 10 * k, np.uint8)
    return PolicyObservation(images={"front": img}, qpos=q, mask=EMB.mask,
                             instruction="reach", stamp=0.1 * k)


def test_chunk_is_lerobots_select_action(checkpoint):
    ours = LeRobotChunkPolicy.from_pretrained(checkpoint, EMB)
    assert isinstance(ours, ChunkPolicy)
    assert ours.camera_names == ["front"] and ours.chunk_size == 4
    ref = DiffusionPolicy.from_pretrained(checkpoint).eval()
    pre, post = make_pre_post_processors(ref.config, pretrained_path=str(checkpoint))
    ref.reset()
    for k in range(2):  # the second chunk sees a two-step history
        chunk = ours.predict_chunk(_obs(k), seed=5)
        assert chunk.shape == (4, UNIFIED_DIM) and chunk.dtype == np.float32
        assert np.all(chunk[:, ~EMB.mask] == 0) and np.all(np.isfinite(chunk))
        ref._queues["action"].clear()  # one chunk per observation, as the node runs it
        torch.manual_seed(5)
        first = post(ref.select_action(pre(ours.frame(_obs(k)))))
        np.testing.assert_allclose(chunk[0, EMB.slots], first[0].numpy(), rtol=1e-5, atol=1e-6)
        assert np.all(chunk[:, EMB.slots] >= [-1.0 - 1e-5, -0.5 - 1e-5])  # clip_sample range


def test_refuses_a_missing_camera_and_a_wrong_embodiment(checkpoint):
    ours = LeRobotChunkPolicy.from_pretrained(checkpoint, EMB)
    obs = _obs(0)
    obs.images = {}
    with pytest.raises(ValueError, match="front"):
        ours.predict_chunk(obs)
    three = Embodiment(name="x", joints=[JointSpec(name=f"j{i}", slot=i, lower=-1.0, upper=1.0)
                                           for i in range(3)])
    with pytest.raises(ValueError, match="3 joints"):
        LeRobotChunkPolicy.from_pretrained(checkpoint, three)
