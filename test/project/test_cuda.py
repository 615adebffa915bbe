"""The CUDA paths: bf16 autocast training, traced sampling, guidance, CPU<->GPU agreement, and
the align / pretrain / steer commands with ``--device cuda``.

Skipped where CUDA is missing (CI). ``ATE_CUDA_TESTS_ON_CPU=1`` runs the same code on CPU,
which checks the tests themselves on a machine without a GPU. On a GPU machine:

    PYTHONPATH=. python -m pytest -q test/test_cuda.py
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch
from support.overfit import losses_before_after
from support.tiny_policy import tiny_vla_config, toy_embodiment, toy_policy_dataset

from ate_ros.core.data.policy_dataset import write_toy_dataset
from ate_ros.core.policy_contract import PolicyObservation
from ate_ros.core.steer.guidance import GuidanceConfig, LatentGuidance
from ate_ros.core.steer.policies import VLAPolicy, load_policy
from ate_ros.core.steer.policies.modeling_vla import OBS_MASK

if torch.cuda.is_available():
    DEV = "cuda"
elif os.environ.get("ATE_CUDA_TESTS_ON_CPU") == "1":
    DEV = "cpu"
else:
    DEV = None
pytestmark = pytest.mark.skipif(DEV is None, reason="needs CUDA (ATE_CUDA_TESTS_ON_CPU=1: "
                                "run the same checks on CPU)")


def _emb(name="toy3", slots=(0, 1, 2), lim=2.0):
    return toy_embodiment(name, slots, lim, joint_prefix=f"{name}_")


def _cfg(**kw):
    return tiny_vla_config(**{"d_model": 64, "ffn_dim": 128, **kw})


def _to(batch, dev):
    return {k: v.to(dev) for k, v in batch.items()}


def _obs(seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros(128, bool)
    mask[:3] = True
    q = np.zeros(128, np.float32)
    q[:3] = rng.uniform(-1, 1, 3)
    return PolicyObservation(images={"front": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)},
                             qpos=q, mask=mask, instruction="reach the target")


@pytest.fixture(scope="module")
def toy_ds(tmp_path_factory):
    root = write_toy_dataset(tmp_path_factory.mktemp("toy"), _emb(), episodes=2, length=6,
                             image_size=20, val_episodes=1)
    return toy_policy_dataset([root])


@pytest.mark.parametrize("head,pred", [("diffusion", "sample"), ("flow", "epsilon")])
def test_overfits_with_bf16_autocast(toy_ds, head, pred):
    """The trainer's AMP path (bf16 autocast on CUDA) still learns: loss drops > 10x."""
    torch.manual_seed(0)
    m = VLAPolicy(_cfg(head=head, prediction_type=pred))
    m.set_norm_stats(*toy_ds.fit_stats())
    m.to(DEV)
    batch = _to(toy_ds.get_batch(np.arange(len(toy_ds))), DEV)
    before, after = losses_before_after(m, batch, 200, device=DEV)
    assert after < before / 10, (before, after)


@pytest.mark.parametrize("head", ["diffusion", "flow"])
def test_gpu_chunks_match_cpu_chunks_for_a_seed(toy_ds, head):
    """Same weights, same seed: the GPU chunk equals the CPU chunk up to float error (noise is
    drawn from a CPU generator); the traced sampler on GPU equals the eager one."""
    torch.manual_seed(2)
    cpu = VLAPolicy(_cfg(head=head))
    cpu.set_norm_stats(*toy_ds.fit_stats())
    cpu.eval()
    gpu = copy.deepcopy(cpu).to(DEV)
    obs = _obs()
    a = cpu.predict_chunk(obs, seed=7)
    b = gpu.predict_chunk(obs, seed=7)
    assert gpu.inference.cache, "the fused sampler should trace on the GPU too"
    print(f"{head}: max |cpu - gpu| = {np.abs(a - b).max():.2e}")
    np.testing.assert_allclose(b, a, atol=5e-3)
    # Not bit-equal on CUDA: TorchScript fuses the trace's elementwise ops after its first
    # (profiling) runs, which changes the rounding of later calls.
    again = gpu.predict_chunk(obs, seed=7)
    print(f"{head}: max |first - later call| = {np.abs(again - b).max():.2e}")
    np.testing.assert_allclose(again, b, rtol=1e-5, atol=1e-5)
    assert not np.allclose(b, gpu.predict_chunk(obs, seed=8), atol=1e-3)
    gpu.fast_inference = False
    np.testing.assert_allclose(gpu.predict_chunk(obs, seed=7), b, rtol=1e-5, atol=1e-5)
    gpu.fast_inference = True
    batch = _to(toy_ds.get_batch(np.arange(3)), DEV)
    out = gpu.sample(batch, 5, torch.Generator().manual_seed(0))
    assert out.device.type == torch.device(DEV).type and torch.isfinite(out).all()
    keep = batch[OBS_MASK].unsqueeze(1).expand_as(out)
    assert torch.all(out[~keep] == 0)


def test_save_on_gpu_load_on_cpu(tmp_path, toy_ds):
    torch.manual_seed(3)
    m = VLAPolicy(_cfg(head="flow"))
    m.set_norm_stats(*toy_ds.fit_stats())
    m.to(DEV).eval()
    obs = _obs(1)
    a = m.predict_chunk(obs, seed=4)
    m.save_pretrained(tmp_path / "p")
    back = load_policy(tmp_path / "p", device="cpu")
    assert back.action_shift.device.type == "cpu"
    np.testing.assert_allclose(back.predict_chunk(obs, seed=4), a, atol=5e-3)
    again = load_policy(tmp_path / "p", device=DEV)
    assert np.array_equal(again.predict_chunk(obs, seed=4), a)


@pytest.mark.parametrize("param", ["epsilon", "flow_openpi"])
def test_guidance_gradient_on_gpu_matches_cpu(param):
    """The per-sample latent gradient (autograd through the frozen encoder) agrees across
    devices, and non-finite samples are skipped and counted on the GPU as on the CPU."""
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 3, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 6))

    def make(dev):
        e = copy.deepcopy(enc).to(dev)

        def encode(x):
            mu, logvar = e(x[:, :, :3]).chunk(2, dim=-1)
            return mu, logvar

        mask = torch.zeros(128, dtype=torch.bool)
        mask[:3] = True
        return LatentGuidance(encode, param, GuidanceConfig(scale=2.0, clamp=0.1,
                                                            direction="paper"), mask=mask)

    g = torch.Generator().manual_seed(0)
    target, noisy, clean = (torch.randn(5, 4, 128, generator=g) for _ in range(3))
    noisy[2, 0, 0] = float("nan")
    level = torch.rand(5, generator=g) * 0.9 + 0.05
    t_cpu, s_cpu = make("cpu").guided_target(target, noisy, clean, level)
    t_gpu, s_gpu = make(DEV).guided_target(*(x.to(DEV) for x in (target, noisy, clean, level)))
    assert s_gpu.applied == s_cpu.applied == 4
    assert s_gpu.skipped_nonfinite == s_cpu.skipped_nonfinite == 1
    torch.testing.assert_close(t_gpu.cpu(), t_cpu, rtol=1e-4, atol=1e-5, equal_nan=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_cli")
    pre = write_toy_dataset(root / "pre", _emb("pre3", [0, 1, 2]), episodes=3, length=16,
                            image_size=16)
    ada = write_toy_dataset(root / "ada", _emb("ada2", [0, 10], 1.0), episodes=3, length=16,
                            image_size=16, seed=1)
    return {"root": root, "pre": pre, "ada": ada}


def test_commands_on_the_gpu(world, capsys):
    """align -> pretrain (bf16 autocast) -> steer with guidance, each with ``--device``."""
    from ate_ros.cli import main

    root, pre, ada = world["root"], world["pre"], world["ada"]
    assert main(["align", "--pretrain", str(pre), "--embodiment-pre",
                 str(pre / "embodiment.yaml"), "--adapt", str(ada), "--embodiment-ada",
                 str(ada / "embodiment.yaml"), "--out", str(root / "vae"), "--chunk", "4",
                 "--preset", "mlp", "--epochs-stage1", "2", "--epochs-stage2", "2",
                 "--batch-size", "16", "--device", DEV, "--no-progress", "--no-plots"]) == 0
    flags = ["--image-size", "16", "--d-model", "32", "--layers", "1", "--chunk", "4",
             "--text-encoder", "hash", "--inference-steps", "3", "--batch-size", "8",
             "--no-progress", "--eval-samples", "8", "--device", DEV]
    assert main(["pretrain", "--data", str(pre), "--out", str(root / "pol"), "--steps", "20",
                 "--eval-every", "10", "--save-every", "10", *flags]) == 0
    out = root / "ft"
    assert main(["steer", "--policy", str(root / "pol"), "--data", str(ada), "--vae",
                 str(root / "vae"), "--out", str(out), "--steps", "10", "--eval-every", "5",
                 "--batch-size", "8", "--no-progress", "--eval-samples", "8",
                 "--device", DEV]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["history"]["train/guidance/applied"][0][1] > 0
    assert all(np.isfinite(v) for _, v in m["history"]["eval/action_mse"])
    # resume on the same device continues from the checkpoint
    assert main(["steer", "--policy", str(root / "pol"), "--data", str(ada), "--vae",
                 str(root / "vae"), "--out", str(out), "--steps", "14", "--eval-every", "7",
                 "--batch-size", "8", "--no-progress", "--eval-samples", "8", "--resume",
                 "--device", DEV]) == 0
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 14
    p = load_policy(out, device=DEV)
    mask = np.zeros(128, bool)
    mask[[0, 10]] = True
    c = p.predict_chunk(PolicyObservation(images={"front": np.zeros((16, 16, 3), np.uint8)},
                                          qpos=np.zeros(128), mask=mask,
                                          instruction="reach the target"), seed=0)
    assert c.shape == (4, 128) and np.isfinite(c).all() and np.all(c[:, ~mask] == 0)


@pytest.mark.skipif(DEV != "cuda", reason="CUDA graphs need CUDA")
@pytest.mark.parametrize("head,pred,clip", [("diffusion", "epsilon", 0.5),
                                            ("flow", "epsilon", 0.0)])
def test_cuda_graph_loop_matches_uncaptured_loop(toy_ds, head, pred, clip):
    """The denoising loop replayed as a CUDA graph gives the uncaptured loop's chunks, one graph
    per signature; in-place weight updates are seen; a device move drops the graphs."""
    torch.manual_seed(11)
    m = VLAPolicy(_cfg(head=head, prediction_type=pred, clip_sample=clip))
    m.set_norm_stats(*toy_ds.fit_stats())
    m.to(DEV).eval()
    batch = _to(toy_ds.get_batch(np.arange(3)), DEV)
    batch[OBS_MASK] = batch[OBS_MASK].clone()
    batch[OBS_MASK][1, 1] = False

    def both(steps, seed):
        m.cuda_graphs = True
        g = m.sample(batch, steps, torch.Generator().manual_seed(seed))
        m.cuda_graphs = False
        u = m.sample(batch, steps, torch.Generator().manual_seed(seed))
        m.cuda_graphs = True
        return g, u

    for steps in (3, 5, 3):
        g, u = both(steps, steps)
        torch.testing.assert_close(g, u, rtol=1e-5, atol=1e-5)
    graphs = [k for k in m.inference.cache if k[0] == "graph"]
    assert len(graphs) == 2 and m.cuda_graphs, graphs
    g1, _ = both(5, 1)
    g2, _ = both(5, 2)  # a replay must not return the previous call's buffer
    assert not torch.allclose(g1, g2)
    with torch.no_grad():
        m.action_out.bias.add_(0.5)
    g, u = both(5, 1)
    torch.testing.assert_close(g, u, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(g, g1)
    obs = _obs()
    c = m.predict_chunk(obs, seed=3)
    m.to("cpu").to(DEV)
    assert not any(k[0] == "graph" for k in m.inference.cache)
    np.testing.assert_allclose(m.predict_chunk(obs, seed=3), c, rtol=1e-5, atol=1e-5)
