"""The action head's building blocks: the noise-level embedding and the decoder block.

Shapes: B batch, N query tokens (the H chunk points), M memory tokens, d width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) in [0, 1] -> (B, dim) sinusoidal features (x scaled to [0, 1000])."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device) / half)
    arg = x.float().unsqueeze(1) * 1000.0 * freqs.unsqueeze(0)
    return torch.cat([arg.sin(), arg.cos()], 1)


class DecoderBlock(nn.Module):
    """Pre-norm decoder block (self-attention, cross-attention to the memory, MLP).

    Hand-written on ``scaled_dot_product_attention`` so that the memory's keys/values can be
    computed once per chunk (:meth:`memory_kv`) and reused by every denoising step.
    """

    def __init__(self, d: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.self_out = nn.Linear(d, d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.cross_out = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Linear(ffn, d))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape  # (B, N, d) -> (B, heads, N, d / heads)
        return x.view(B, N, self.heads, -1).transpose(1, 2)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(memory).chunk(2, -1)
        return self._heads(k), self._heads(v)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, N, d = x.shape
        p = self.dropout if self.training else 0.0
        q, k, v = (self._heads(t) for t in self.qkv(self.norm1(x)).chunk(3, -1))
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        x = x + self.self_out(a.transpose(1, 2).reshape(B, N, d))
        a = F.scaled_dot_product_attention(self._heads(self.q(self.norm2(x))), kv[0], kv[1],
                                           dropout_p=p)
        x = x + self.cross_out(a.transpose(1, 2).reshape(B, N, d))
        return x + self.mlp(self.norm3(x))
