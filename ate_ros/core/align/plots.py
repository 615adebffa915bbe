"""PNG plots of an alignment run (matplotlib, Agg backend; no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_losses(history: dict[str, list[tuple[int, float]]], path: str | Path) -> Path:
    """One panel per loss term; a line per (model, split). ``history`` as in RunLogger."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    terms = ("total", "recon", "kl", "mmd")
    fig, axes = plt.subplots(1, len(terms), figsize=(4 * len(terms), 3.2))
    for ax, term in zip(axes, terms):
        for key, points in sorted(history.items()):
            if key.endswith(f"/{term}") and points:
                steps, vals = zip(*points)
                ax.plot(steps, vals, label=key.rsplit("/", 1)[0],
                        linestyle="--" if "/val" in key else "-")
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.set_yscale("log" if term != "mmd" else "symlog", **(
            {"linthresh": 1e-4} if term == "mmd" else {}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_latent_pca(latents: dict[str, torch.Tensor | np.ndarray], path: str | Path,
                    max_points: int = 2000) -> Path:
    """2-D PCA (fitted on the first entry, the pre-training latents) of every set of latents."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sets = {k: np.asarray(v, dtype=np.float64) for k, v in latents.items() if len(v)}
    ref = next(iter(sets.values()))
    mean = ref.mean(0)
    # principal axes of the reference set via SVD; pad when Z == 1
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    axes = vt[:2].T if vt.shape[0] >= 2 else np.pad(vt.T, ((0, 0), (0, 1)))
    fig, ax = plt.subplots(figsize=(5.5, 5))
    rng = np.random.default_rng(0)
    for (name, z), color in zip(sets.items(), ("tab:gray", "tab:red", "tab:blue", "tab:green")):
        if len(z) > max_points:
            z = z[rng.choice(len(z), max_points, replace=False)]
        p = (z - mean) @ axes
        ax.scatter(p[:, 0], p[:, 1], s=4, alpha=0.4, color=color, label=f"{name} ({len(z)})")
    ax.set_xlabel("PC 1 (pre-training latents)")
    ax.set_ylabel("PC 2")
    ax.set_title("latent means, 2-D PCA")
    ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
