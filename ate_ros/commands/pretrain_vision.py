"""``ate-ros pretrain-vision``: pre-train the policy's image encoder on labelled sim scenes."""

from __future__ import annotations

import argparse

from ate_ros.commands.arguments import add_overwrite_argument, csv_list, error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (vision_encoder.*)")
    parser.add_argument("--embodiments", type=csv_list, default=["sim_arm6", "sim_arm5"],
                        help="simulated arms that appear in the frames (use the pre-training "
                             "arms, not the robot you adapt to)")
    parser.add_argument("--tasks", type=csv_list, default=["reach", "push", "pick_color"])
    parser.add_argument("--frames", type=int, default=12000, help="rendered, labelled frames")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--vision-pool", default="keypoints", choices=("avg", "max", "keypoints"))
    parser.add_argument("--vision-grid", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np

    from ate_ros.core.embodiment import EmbodimentError
    from ate_ros.core.sim.labelled_frames import render_labelled_frames
    from ate_ros.core.sim.object_labels import (
        LABEL_NAMES,
        label_weights,
        )
    from ate_ros.core.steer.policies import VLAConfig
    from ate_ros.core.steer.policies.vision_pretrain import (
        VisionEncoderSpec,
        pretrain_image_encoder,
        save_vision_encoder,
    )
    from ate_ros.core.training.files import atomic_output_dir
    from ate_ros.core.training.output_guard import check_output

    try:
        for name in ("frames", "steps", "batch_size"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got "
                                 f"{getattr(args, name)}")
        if not args.lr > 0:
            raise ValueError(f"--lr must be > 0, got {args.lr}")
        check_output(args.out, overwrite=args.overwrite)
        cfg = VLAConfig(image_size=args.image_size, d_model=args.d_model,
                        vision_pool=args.vision_pool, vision_grid=args.vision_grid)
        spec = VisionEncoderSpec.from_policy_config(cfg)
        print(f"rendering {args.frames} labelled frames ({', '.join(args.embodiments)} x "
              f"{', '.join(args.tasks)})", flush=True)
        frames = render_labelled_frames(args.embodiments, args.tasks, args.frames,
                                        seed=args.seed,
                                        image_size=(args.image_size, args.image_size))
        print(f"training the image encoder for {args.steps} steps", flush=True)
        encoder, metrics = pretrain_image_encoder(
            spec, frames.images, frames.labels, label_weights(frames.labels), steps=args.steps,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    except KeyboardInterrupt:
        print("ate-ros pretrain-vision: interrupted; nothing was written (it keeps no "
              "checkpoints: run the same command again)", file=sys.stderr)
        return 130
    except (ValueError, EmbodimentError) as exc:
        return error("pretrain-vision", exc)
    metrics["label_names"] = list(LABEL_NAMES)
    metrics["embodiments"] = list(args.embodiments)
    metrics["tasks"] = list(args.tasks)
    with atomic_output_dir(args.out) as tmp:
        save_vision_encoder(tmp, encoder, spec, metrics)
    out = args.out
    rmse = dict(zip(LABEL_NAMES, metrics["val_rmse"]))
    print(f"vision encoder written to {out}")
    print("held-out position error (RMSE, cm):")
    for name in dict.fromkeys(n.split("/")[0] for n in LABEL_NAMES):
        cols = [rmse[f"{name}/{k}"] for k in ("x", "y", "z")]
        print(f"  {name:7s} {100 * float(np.mean(cols)):5.1f}")
    print(f"  (always guessing the mean: {100 * metrics['baseline_pos_rmse']:.1f})")
    return 0
