"""Which inputs does a trained policy use? Shuffle each input across held-out frames and compare
the sampled chunks' action error with the unshuffled one.

A ratio near 1 for ``images`` means the policy ignores its cameras (a policy that only continues
the motion its joint state implies still reaches a low action error on smooth demonstrations,
but fails closed loop: the copycat problem).

    .venv/bin/python benchmarks/probe_policy_inputs.py --policy assets/pretrained_sim \\
        --data runs/pretrain_data/sim_arm6-reach [--frames 96] [--seeds 2]

Prints a table and writes ``benchmarks/results/probe_policy_inputs.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from result_meta import result_meta

RESULTS = Path(__file__).resolve().parent / "results"


def episode_start_frames(dataset, first: int) -> np.ndarray:
    """Indices of the first ``first`` frames of every episode: where the arm still rests and only
    the image (and instruction) can tell where to go."""
    return np.concatenate([np.arange(e.start, e.start + min(first, e.length))
                           for e in dataset.episodes])


def input_sensitivity(policy, dataset, frames: int = 96, seeds: int = 2,
                      candidates: np.ndarray | None = None) -> dict[str, float]:
    """Action MSE with each input shuffled across frames, divided by the unshuffled MSE.

    ``candidates``: dataset indices to draw the frames from (default: all)."""
    from ate_ros.core.steer.policies.modeling_vla import (
        ACTION,
        OBS_IMAGES,
        OBS_MASK,
        OBS_STATE,
        OBS_TEXT,
    )

    pool = np.arange(len(dataset)) if candidates is None else np.asarray(candidates)
    idx = pool[np.linspace(0, len(pool) - 1, min(frames, len(pool))).round().astype(np.int64)]
    batch = dataset.get_batch(idx)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(idx)))
    policy.eval()

    def mse(b: dict) -> float:
        errs = []
        for s in range(seeds):
            pred = policy.sample(b, None, torch.Generator().manual_seed(s))
            m = b[OBS_MASK].float().unsqueeze(1).expand_as(pred)
            errs.append(float(((pred - b[ACTION]) ** 2 * m).sum() / m.sum()))
        return float(np.mean(errs))

    base = mse(batch)
    out = {"mse": base}
    for name, key in (("images", OBS_IMAGES), ("state", OBS_STATE), ("instruction", OBS_TEXT)):
        out[name] = mse({**batch, key: batch[key][perm]}) / base
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", required=True, help="policy folder")
    ap.add_argument("--data", required=True, help="dataset folder(s), comma-separated")
    ap.add_argument("--split", default="val")
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--seeds", type=int, default=2, help="sampling seeds averaged per MSE")
    ap.add_argument("--episode-start", type=int, default=0, metavar="N",
                    help="probe only the first N frames of each episode (0: all frames)")
    ap.add_argument("--out", default=str(RESULTS / "probe_policy_inputs.json"))
    a = ap.parse_args(argv)
    from ate_ros.core.data.policy_dataset import PolicyDataset
    from ate_ros.core.steer.policies import load_policy
    from ate_ros.core.steer.policies.text_encoder import embed_instructions

    policy = load_policy(a.policy)
    cfg = policy.config
    rows = {}
    for data in a.data.split(","):
        ds = PolicyDataset([data], a.split, cfg.chunk_size, cfg.camera_names, cfg.image_size,
                           None, lambda t: embed_instructions(t, cfg.text_encoder, cfg.text_dim))
        cand = episode_start_frames(ds, a.episode_start) if a.episode_start else None
        rows[data] = input_sensitivity(policy, ds, a.frames, a.seeds, cand)
    print(f"{'dataset':48s} {'MSE':>8} {'images':>8} {'state':>8} {'instr.':>8}")
    for data, r in rows.items():
        print(f"{data[-48:]:48s} {r['mse']:8.4f} {r['images']:7.2f}x {r['state']:7.2f}x "
              f"{r['instruction']:7.2f}x")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"meta": result_meta(), "policy": a.policy,
                                       "split": a.split, "frames": a.frames,
                                       "episode_start": a.episode_start,
                                       "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
