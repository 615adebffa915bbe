"""Environment state as object tokens, one of them picked out by the instruction.

A low-dimensional environment state lists several objects in fixed slots (the simulation: the
task's target and goal, then one slot per colour, ``present`` + offset). Where the state does
not name the target (a tracker that reports colours only), which slot matters is said only by
the instruction ("touch the blue block"), and one MLP over the whole vector concatenated with
the instruction embedding would have to learn that as a multiplicative gate from a few hundred
demonstrations, which it barely does (docs/design_notes.md, "Measurements behind the code").
Here each slot becomes a token
(shared MLP over its values + a learned slot identity), the instruction scores the slots
(scaled dot product, softmax) and the weighted sum of slot tokens is one more token: the object
the instruction names, the grounding an object-centric policy makes explicit (as an image
VLA's cross-attention from text to patches does).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ObjectSlotEncoder(nn.Module):
    """(B, E) normalised environment state + (B, d) instruction token -> (B, S + 1 [+ 1], d).

    The first ``slots * slot_size`` values are the objects, slot after slot; what follows (the
    fingertip in the simulation) becomes one more token. Output order: the named object, the
    ``slots`` object tokens, then the rest token when there is a rest.

    Args:
        env_dim: E, width of the environment state.
        slots: S, number of object slots.
        slot_size: Values per slot.
        d: Token width.
    """

    def __init__(self, env_dim: int, slots: int, slot_size: int, d: int) -> None:
        super().__init__()
        if slots < 1 or slot_size < 1 or slots * slot_size > env_dim:
            raise ValueError(f"{slots} slots of {slot_size} values do not fit an environment "
                             f"state of {env_dim}")
        self.slots, self.slot_size = slots, slot_size
        self.rest = env_dim - slots * slot_size
        self.slot_proj = nn.Sequential(nn.Linear(slot_size, d), nn.SiLU(), nn.Linear(d, d))
        self.slot_identity = nn.Parameter(torch.randn(slots, d) * 0.02)
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.named_proj = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.rest_proj = (nn.Sequential(nn.Linear(self.rest, d), nn.SiLU(), nn.Linear(d, d))
                          if self.rest else None)

    @staticmethod
    def tokens_for(env_dim: int, slots: int, slot_size: int) -> int:
        """Tokens the encoder makes for these settings."""
        return 1 + slots + (1 if env_dim > slots * slot_size else 0)

    def slot_weights(self, env: torch.Tensor, text: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, d) object tokens and (B, S) weights the instruction gives them."""
        B = env.shape[0]
        objs = env[:, :self.slots * self.slot_size].reshape(B, self.slots, self.slot_size)
        tok = self.slot_proj(objs) + self.slot_identity  # (B, S, d)
        score = (self.key(tok) * self.query(text).unsqueeze(1)).sum(-1)
        return tok, torch.softmax(score / math.sqrt(tok.shape[-1]), dim=-1)

    def forward(self, env: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        tok, weights = self.slot_weights(env, text)
        named = self.named_proj((weights.unsqueeze(-1) * tok).sum(1, keepdim=True))
        out = [named, tok]
        if self.rest_proj is not None:
            out.append(self.rest_proj(env[:, self.slots * self.slot_size:]).unsqueeze(1))
        return torch.cat(out, 1)
