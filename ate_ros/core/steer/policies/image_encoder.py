"""The policy's image encoder: a small CNN per camera frame, pooled into a few tokens.

Shapes: N frames (batch x cameras), S input size, g = ``vision_grid``, K = g^2 tokens, d width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def frames_to_input(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 camera frames -> (N, 3, size, size) float in [0, 1], the image
    encoder's input (bilinear resize when the frames have another size)."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


class ImageEncoder(nn.Module):
    """(N, 3, S, S) float in [0, 1] -> (N, grid^2, d) tokens. Stride-2 conv stages + GroupNorm.

    ``pool="avg"`` averages the feature map over grid x grid cells. ``pool="keypoints"`` learns
    grid^2 spatial attention maps (a spatial softmax, as in robot-learning encoders) and gives
    each token the attended feature *and* the expected image coordinates of its map, so the
    position of a small target survives pooling (an average over a coarse cell loses it).
    ``query_delta`` (N, grid^2, c) adds a per-sample term to each map's query (the
    instruction's, see ``VLAConfig.instruction_keypoints``).
    """

    def __init__(self, channels: list[int], d_model: int, grid: int, pool: str = "avg") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.pool_mode = pool
        if pool == "keypoints":
            self.attn = nn.Conv2d(c_in, grid * grid, 1)
            self.proj = nn.Linear(c_in + 2, d_model)
        else:
            self.pool = nn.AdaptiveMaxPool2d(grid) if pool == "max" else nn.AdaptiveAvgPool2d(grid)
            self.proj = nn.Linear(c_in, d_model)
        self.register_buffer("pix_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pix_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
                             persistent=False)

    @property
    def channels(self) -> int:
        """Channels of the last feature map."""
        return self.proj.in_features - (2 if self.pool_mode == "keypoints" else 0)

    def forward(self, x: torch.Tensor, query_delta: torch.Tensor | None = None) -> torch.Tensor:
        f = self.net((x - self.pix_mean) / self.pix_std)  # (N, c, h, w)
        if self.pool_mode in ("avg", "max"):
            f = self.pool(f)  # (N, c, g, g)
            return self.proj(f.flatten(2).transpose(1, 2))  # (N, g*g, d)
        N, c, h, w = f.shape
        pixels = f.flatten(2)  # (N, c, h*w)
        logits = self.attn(f).flatten(2)  # (N, K, h*w)
        if query_delta is not None:
            logits = logits + query_delta @ pixels
        attn = logits.softmax(-1)
        feat = attn @ pixels.transpose(1, 2)  # (N, K, c)
        ys = torch.linspace(-1.0, 1.0, h, device=f.device, dtype=f.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=f.device, dtype=f.dtype)
        grid_xy = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(h * w, 2)
        return self.proj(torch.cat([feat, attn @ grid_xy], -1))  # (N, K, d)
