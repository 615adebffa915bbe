"""``ate-ros pretrain-vision``: pre-train the policy's image encoder on labelled sim scenes."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ate_ros.commands.arguments import (
    add_dataclass_options,
    add_overwrite_argument,
    dataclass_kwargs,
    error,
)

ENCODER_FIELDS = ("image_size", "d_model", "vision_pool", "vision_grid")
"""The ``VLAConfig`` fields the image encoder is built from (``VisionEncoderSpec``)."""


@dataclass(kw_only=True)
class PretrainVisionOptions:
    """The options of ``ate-ros pretrain-vision`` besides the encoder's ``VLAConfig`` fields."""

    out: str = field(metadata={"help": "output folder (vision_encoder.*)"})
    embodiments: list[str] = field(default_factory=lambda: ["sim_arm6", "sim_arm5"], metadata={
        "help": "simulated arms that appear in the frames (use the pre-training arms, not the "
                "robot you adapt to)"})
    tasks: list[str] = field(default_factory=lambda: ["reach", "push", "pick_color"], metadata={
        "help": "simulation tasks whose scenes are rendered"})
    frames: int = field(default=12000, metadata={"help": "rendered, labelled frames"})
    steps: int = field(default=3000, metadata={"help": "optimisation steps"})
    batch_size: int = field(default=64, metadata={"help": "frames per step"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    seed: int = field(default=0, metadata={"help": "seed of the frames and the training"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ate_ros.core.steer.policies.configuration_vla import VLAConfig

    add_dataclass_options(parser, PretrainVisionOptions)
    add_dataclass_options(parser, VLAConfig, only=ENCODER_FIELDS)
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
        cfg = VLAConfig(**dataclass_kwargs(VLAConfig, args, only=ENCODER_FIELDS))
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
