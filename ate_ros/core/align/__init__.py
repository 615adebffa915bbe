"""Alignment (the "Align" of Align-Then-stEer): two action VAEs and their shared latent space.

Stage 1 trains a VAE on pre-training chunks (all embodiments, unified space) toward N(0, I) and
summarises its aggregate posterior as q_pre; stage 2 trains a new VAE on the adaptation chunks
with the reverse KL(q_psi(z|a) || q_pre) plus MMD to q_pre. :func:`train_alignment` runs it all
(``ate-ros align`` is its CLI); :func:`load_alignment` returns the frozen
:class:`AlignmentBundle` that steering and the OOD monitor use::

    bundle = load_alignment(out_dir, device="cpu")
    mu, logvar = bundle.encode(chunks)      # chunks (B, H, 128) joint units -> (B, Z) each
    score = bundle.ood_score(chunks)        # (B,), ~1 in distribution
"""

from ate_ros.core.align.artifacts import (
    AlignmentBundle,
    StageModel,
    load_alignment,
    load_stage1,
    write_alignment,
)
from ate_ros.core.align.configuration_vae import AlignConfig, StageConfig, VAEConfig
from ate_ros.core.align.losses import (
    kl_standard,
    kl_to_gaussian,
    mmd_imq,
    recon_loss,
    reference_mmd_c,
)
from ate_ros.core.align.modeling_vae import ActionVAE, count_parameters
from ate_ros.core.align.prior import AggregatePosterior, GaussianLatent, aggregate_posterior
from ate_ros.core.align.trainer import format_report, train_alignment, train_vae

__all__ = [
    "ActionVAE",
    "AggregatePosterior",
    "AlignConfig",
    "AlignmentBundle",
    "GaussianLatent",
    "StageConfig",
    "StageModel",
    "VAEConfig",
    "aggregate_posterior",
    "count_parameters",
    "format_report",
    "kl_standard",
    "kl_to_gaussian",
    "load_alignment",
    "load_stage1",
    "mmd_imq",
    "recon_loss",
    "reference_mmd_c",
    "train_alignment",
    "train_vae",
    "write_alignment",
]
