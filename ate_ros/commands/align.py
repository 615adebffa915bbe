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

from ate_ros.commands.arguments import add_overwrite_argument, csv_list, error, interrupted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretrain", type=csv_list, default=[],
                        help="pre-training dataset folder(s), comma separated: our episode "
                             "format, or LeRobotDatasets (meta/info.json, or lerobot:<dir>)")
    parser.add_argument("--embodiment-pre", type=csv_list, default=[],
                        help="embodiment YAML (or name) per pre-training dataset, comma "
                             "separated ('' for LeRobotDatasets: read from each dataset)")
    parser.add_argument("--adapt", default="",
                        help="adaptation dataset folder (our format, or a LeRobotDataset: "
                             "its action column per episode; docs/lerobot.md)")
    parser.add_argument("--embodiment-ada", default="",
                        help="adaptation embodiment YAML or name ('' for a LeRobotDataset: "
                             "its embodiment.yaml, else its robot_type)")
    parser.add_argument("--stage1", default="",
                        help="skip stage 1: reuse the VAE and q_pre of this earlier align output")
    parser.add_argument("--out", required=True, help="output folder (replaced atomically)")
    parser.add_argument("--chunk", type=int, default=16, help="chunk size H")
    parser.add_argument("--preset", default="small", choices=("small", "mlp", "paper"),
                        help="VAE size")
    parser.add_argument("--latent-dim", type=int, default=0, help="override the latent size Z")
    parser.add_argument("--epochs-stage1", type=int, default=60)
    parser.add_argument("--epochs-stage2", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-3, help="KL weight (both stages)")
    parser.add_argument("--mmd-weight", type=float, default=1.0, help="MMD weight (both stages)")
    parser.add_argument("--covariance", default="diag", choices=("diag", "full"),
                        help="Gaussian summary of q_pre / the adaptation latents")
    parser.add_argument("--key", default="auto", choices=("auto", "action", "qpos"),
                        help="array to chunk: auto = action when present, else qpos")
    parser.add_argument("--short", default="drop", choices=("drop", "pad", "error"),
                        help="episodes shorter than the chunk")
    parser.add_argument("--no-control", action="store_true",
                        help="skip the unaligned control VAE of the quality report")
    parser.add_argument("--control-prior", default="none", choices=("none", "standard"),
                        help="control VAE: reconstruction only, or the stage-1 losses to N(0,I)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="carry on from the checkpoints an interrupted run with the same "
                             "settings left in <out>.resume/ (without it, a run refuses to "
                             "start while they are there)")
    add_overwrite_argument(parser)
    parser.add_argument("--checkpoint-every", type=int, default=1,
                        help="epochs between those checkpoints")


def run(args: argparse.Namespace) -> int:
    import shutil

    from ate_ros.core.align import AlignConfig, StageConfig, format_report, train_alignment
    from ate_ros.core.align.resume import resume_dir
    from ate_ros.core.lerobot_compat import LeRobotUnavailable
    from ate_ros.core.training.files import CheckpointError, read_json
    from ate_ros.core.training.output_guard import check_output

    def stage(epochs: int) -> StageConfig:
        return StageConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                           kl_weight=args.kl_weight, mmd_weight=args.mmd_weight)

    try:
        cfg = AlignConfig(
            out=args.out, pretrain=args.pretrain, embodiment_pre=args.embodiment_pre,
            adapt=args.adapt, embodiment_ada=args.embodiment_ada, stage1_dir=args.stage1,
            preset=args.preset, chunk_size=args.chunk,
            vae_overrides={"latent_dim": args.latent_dim} if args.latent_dim else {},
            stage1=stage(args.epochs_stage1), stage2=stage(args.epochs_stage2),
            control=not args.no_control, control_prior=args.control_prior,
            covariance=args.covariance, key=args.key, short=args.short, device=args.device,
            seed=args.seed, plots=not args.no_plots, progress=not args.no_progress,
            resume=args.resume, checkpoint_every=args.checkpoint_every)
        # An align output is only ever replaced by --overwrite; --resume carries on from
        # <out>.resume/, never from a finished output.
        check_output(args.out, inputs=[*args.pretrain, *args.embodiment_pre, args.adapt,
                                       args.embodiment_ada, args.stage1],
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
