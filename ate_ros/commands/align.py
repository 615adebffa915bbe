"""``ate-ros align``: train the two-stage alignment VAEs.

Examples::

    ate-ros align --pretrain data/pre_a,data/pre_b --embodiment-pre arm_a.yaml,arm_b.yaml \\
        --adapt data/new --embodiment-ada new.yaml --out runs/align
    # reuse a stage-1 VAE (and its q_pre) for another robot:
    ate-ros align --stage1 runs/align --adapt data/other --embodiment-ada other.yaml \\
        --out runs/align_other
    # a LeRobotDataset (meta/info.json; bag2dataset --format lerobot) as the adaptation data,
    # its embodiment read from the dataset (embodiment.yaml, else robot_type):
    ate-ros align --pretrain data/pre_a --embodiment-pre arm_a.yaml \
        --adapt lerobot:data/new_lerobot --out runs/align
    # carry on after an interruption (Ctrl-C, a killed job), same flags plus --resume:
    ate-ros align ... --out runs/align --resume
    # multi-GPU (DDP), no code change:
    torchrun --nproc_per_node 4 $(which ate-ros) align ...
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ate_ros.commands.arguments import (
    add_dataclass_options,
    add_overwrite_argument,
    dataclass_kwargs,
    error,
    field_default,
    interrupted,
)

ALIGN_NOT_ON_CLI = ("vae_overrides", "norm_mode", "mmd_c", "mmd_unbiased", "amp", "tensorboard")
"""AlignConfig fields the command leaves at their defaults."""
STAGE_FIELDS = ("batch_size", "lr", "kl_weight", "mmd_weight")
"""StageConfig fields set once for both stages."""


@dataclass(kw_only=True)
class AlignOptions:
    """The options of ``ate-ros align`` that are not one field of ``AlignConfig`` or
    ``StageConfig``: the two stages' epochs, the latent size override."""

    latent_dim: int = field(default=0, metadata={
        "help": "override the latent size Z of the preset (0: the preset's)"})
    epochs_stage1: int = field(metadata={"help": "stage 1: maximum epochs"})
    epochs_stage2: int = field(metadata={"help": "stage 2: maximum epochs"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ate_ros.core.align.configuration_vae import AlignConfig, StageConfig

    add_dataclass_options(parser, AlignConfig, skip=ALIGN_NOT_ON_CLI, required=("out",))
    add_dataclass_options(parser, AlignOptions, defaults={
        "epochs_stage1": field_default(AlignConfig, "stage1").epochs,
        "epochs_stage2": field_default(AlignConfig, "stage2").epochs})
    add_dataclass_options(parser, StageConfig, only=STAGE_FIELDS, note="both stages")
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    import shutil

    from ate_ros.core.align import AlignConfig, StageConfig, format_report, train_alignment
    from ate_ros.core.align.resume import resume_dir
    from ate_ros.core.lerobot_compat import LeRobotUnavailable
    from ate_ros.core.training.files import CheckpointError, read_json
    from ate_ros.core.training.output_guard import check_output

    def stage(epochs: int) -> StageConfig:
        return StageConfig(epochs=epochs, **dataclass_kwargs(StageConfig, args, only=STAGE_FIELDS))

    try:
        cfg = AlignConfig(
            **dataclass_kwargs(AlignConfig, args, skip=ALIGN_NOT_ON_CLI),
            vae_overrides={"latent_dim": args.latent_dim} if args.latent_dim else {},
            stage1=stage(args.epochs_stage1), stage2=stage(args.epochs_stage2))
        # An align output is only ever replaced by --overwrite; --resume carries on from
        # <out>.resume/, never from a finished output.
        check_output(args.out, inputs=[*args.pretrain, *args.embodiment_pre, args.adapt,
                                       args.embodiment_ada, args.stage1_dir],
                     overwrite=args.overwrite, resume=args.resume)
        if args.overwrite and not args.resume:
            shutil.rmtree(resume_dir(args.out), ignore_errors=True)
        out = train_alignment(cfg)
    except KeyboardInterrupt:
        return interrupted("align", args, resume_dir(args.out))
    except (ValueError, FileExistsError, CheckpointError, LeRobotUnavailable) as exc:
        # EpisodeFormatError/EmbodimentError/ChunkDataError are ValueErrors naming the file.
        return error("align", exc)
    metrics = read_json(out / "metrics.json")["summary"] if (out / "metrics.json").exists() \
        else {}
    if metrics.get("quality"):
        print(format_report(metrics["quality"]))
    print(f"alignment written to {out}")
    return 0
