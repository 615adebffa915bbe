"""The action VAEs: a transformer InfoVAE (paper and reference code) and a small MLP variant.

Both take a *normalised* unified chunk ``x`` (B, H, 128) and the embodiment mask (B, 128) and
return the posterior ``(mu, logvar)`` (B, Z) and a reconstruction (B, H, 128). The mask is an
input (concatenated to every step / to z) so one stage-1 VAE covers several embodiments;
off-mask slots of the input are zeroed, and the reconstruction loss ignores them.

Transformer (as in the paper/reference): the encoder sees ``[mu tokens, logvar tokens, a_1..a_H]``
and reads the posterior out of the learned tokens (K of each, each Z/K wide; K = 1 in the paper).
The decoder's H learned queries self-attend and cross-attend to a memory made of the K latent
tokens (projected z) and a mask token.
"""

from __future__ import annotations

import torch
from torch import nn

from ate_ros.core.align.configuration_vae import ARCH_MLP, VAEConfig


class _TransformerVAE(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        d, K, H = cfg.d_model, cfg.num_latent_tokens, cfg.chunk_size
        self.K, self.zk = K, cfg.latent_dim // K
        self.in_proj = nn.Linear(2 * cfg.action_dim, d)  # [x * mask, mask] per step
        self.pos = nn.Parameter(torch.randn(H, d) * 0.02)
        self.stat_tokens = nn.Parameter(torch.randn(2 * K, d) * 0.02)  # K mu + K logvar tokens
        enc_layer = nn.TransformerEncoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout,
                                               batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc_layer, cfg.num_encoder_layers,
                                             enable_nested_tensor=False)
        self.enc_norm = nn.LayerNorm(d)
        self.to_mu = nn.Linear(d, self.zk)
        self.to_logvar = nn.Linear(d, self.zk)
        self.z_proj = nn.Linear(self.zk, d)
        self.z_pos = nn.Parameter(torch.randn(K, d) * 0.02)
        self.mask_proj = nn.Linear(cfg.action_dim, d)
        self.queries = nn.Parameter(torch.randn(H, d) * 0.02)
        dec_layer = nn.TransformerDecoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout,
                                               batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(dec_layer, cfg.num_decoder_layers)
        self.dec_norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, cfg.action_dim)

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = x.shape[0]
        m = mask.to(x.dtype)[:, None, :].expand_as(x)           # (B, H, 128)
        tok = self.in_proj(torch.cat([x * m, m], -1)) + self.pos  # (B, H, d)
        h = torch.cat([self.stat_tokens.expand(B, -1, -1), tok], 1)
        h = self.enc_norm(self.encoder(h))[:, : 2 * self.K]       # (B, 2K, d)
        mu = self.to_mu(h[:, : self.K]).flatten(1)                # (B, Z)
        logvar = self.to_logvar(h[:, self.K:]).flatten(1)
        return mu, logvar

    def encode_mean(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``encode(x, mask)[0]`` without the work only logvar needs: the last encoder layer
        runs its queries, feed-forward and norm on the K mu tokens alone (they attend to all
        tokens, as in :meth:`encode`). The latent gradient of guidance pays for this layer in
        the forward and the backward on every fine-tuning step."""
        B = x.shape[0]
        m = mask.to(x.dtype)[:, None, :].expand_as(x)           # (B, H, 128)
        tok = self.in_proj(torch.cat([x * m, m], -1)) + self.pos  # (B, H, d)
        h = torch.cat([self.stat_tokens.expand(B, -1, -1), tok], 1)
        *first, last = self.encoder.layers
        for layer in first:
            # without autograd, the layer's fused inference kernel; with it, the same layer
            # written out (see _layer_forward)
            h = _layer_forward(layer, h) if torch.is_grad_enabled() else layer(h)
        hk = _layer_forward(last, h, rows=self.K)               # (B, 2K + H, d) -> (B, K, d)
        if self.encoder.norm is not None:
            hk = self.encoder.norm(hk)
        return self.to_mu(self.enc_norm(hk)).flatten(1)        # (B, Z)

    def decode(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B = z.shape[0]
        zt = self.z_proj(z.view(B, self.K, self.zk)) + self.z_pos  # (B, K, d)
        mt = self.mask_proj(mask.to(z.dtype))[:, None]             # (B, 1, d)
        memory = torch.cat([zt, mt], 1)
        q = (self.queries + mt).contiguous()                       # (B, H, d)
        return self.out_proj(self.dec_norm(self.decoder(q, memory)))


def _layer_forward(layer: nn.TransformerEncoderLayer, h: torch.Tensor,
                   rows: int | None = None) -> torch.Tensor:
    """A norm_first ``TransformerEncoderLayer`` (as built in ``_TransformerVAE``) on ``h``
    (B, S, d), written out; with ``rows``, only the first ``rows`` output tokens (their queries
    attend to all S tokens). Same computation as ``layer(h)[:, :rows]``; unlike
    ``nn.MultiheadAttention`` it splits the packed q/k/v projection with views, whose backward
    is one concatenation (MHA's three selects each fill a zero tensor of the packed size)."""
    attn = layer.self_attn
    E, nh = attn.embed_dim, attn.num_heads
    B, S = h.shape[:2]
    hn = layer.norm1(h)
    w, b = attn.in_proj_weight, attn.in_proj_bias
    if rows is None:
        q, k, v = nn.functional.linear(hn, w, b).chunk(3, -1)
    else:
        q = nn.functional.linear(hn[:, :rows], w[:E], b[:E])
        k, v = nn.functional.linear(hn, w[E:], b[E:]).chunk(2, -1)

    def heads(t: torch.Tensor) -> torch.Tensor:  # (B, n, E) -> (B, heads, n, E / heads)
        return t.reshape(B, -1, nh, E // nh).transpose(1, 2)

    a = nn.functional.scaled_dot_product_attention(
        heads(q), heads(k), heads(v), dropout_p=attn.dropout if layer.training else 0.0)
    a = attn.out_proj(a.transpose(1, 2).reshape(B, -1, E))
    x = (h if rows is None else h[:, :rows]) + layer.dropout1(a)
    return x + layer._ff_block(layer.norm2(x))


class _MLPVAE(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        H, A, Z, W = cfg.chunk_size, cfg.action_dim, cfg.latent_dim, cfg.mlp_hidden
        self.H, self.A = H, A

        def mlp(n_in: int, n_out: int) -> nn.Sequential:
            layers: list[nn.Module] = []
            for i in range(cfg.mlp_layers):
                layers += [nn.Linear(n_in if i == 0 else W, W), nn.SiLU(), nn.Dropout(cfg.dropout)]
            return nn.Sequential(*layers, nn.Linear(W, n_out))

        self.enc = mlp(H * A + A, 2 * Z)   # [flattened masked chunk, mask]
        self.dec = mlp(Z + A, H * A)       # [z, mask]

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = mask.to(x.dtype)
        h = self.enc(torch.cat([(x * m[:, None]).flatten(1), m], -1))
        mu, logvar = h.chunk(2, -1)
        return mu, logvar

    def encode_mean(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``encode(x, mask)[0]``: the last layer computes only the mu half of its outputs."""
        m = mask.to(x.dtype)
        *body, out = self.enc
        h = torch.cat([(x * m[:, None]).flatten(1), m], -1)
        for layer in body:
            h = layer(h)
        Z = out.out_features // 2  # the output is [mu, logvar]
        return nn.functional.linear(h, out.weight[:Z], out.bias[:Z])

    def decode(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.dec(torch.cat([z, mask.to(z.dtype)], -1))
        return out.view(z.shape[0], self.H, self.A)


class ActionVAE(nn.Module):
    """An action-chunk VAE over the unified space (see module docstring)."""

    LOGVAR_RANGE = (-12.0, 8.0)  # clamp so exp() can neither under- nor overflow

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.net = _MLPVAE(config) if config.arch == ARCH_MLP else _TransformerVAE(config)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def _check(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        H, A = self.config.chunk_size, self.config.action_dim
        if x.ndim != 3 or x.shape[1:] != (H, A):
            raise ValueError(f"chunks must be (B, {H}, {A}) (chunk_size {H}, unified space), got "
                             f"{tuple(x.shape)}")
        if mask.shape != (x.shape[0], A):
            raise ValueError(f"mask must be (B, {A}), got {tuple(mask.shape)}")

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, 128) normalised chunk, (B, 128) mask -> mu, logvar (B, Z)."""
        self._check(x, mask)
        mu, logvar = self.net.encode(x, mask)
        return mu, logvar.clamp(*self.LOGVAR_RANGE)

    def encode_mean(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, H, 128), (B, 128) -> mu (B, Z), equal to ``encode(x, mask)[0]`` (to float
        rounding) at less cost: what guidance's latent gradient goes through."""
        self._check(x, mask)
        return self.net.encode_mean(x, mask)

    def decode(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, Z), (B, 128) -> (B, H, 128) normalised reconstruction."""
        return self.net.decode(z, mask)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype) \
            if generator is not None else torch.randn_like(mu)
        return mu + eps * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, sample: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction, z, mu, logvar)."""
        mu, logvar = self.encode(x, mask)
        z = self.reparameterize(mu, logvar) if sample else mu
        return self.decode(z, mask), z, mu, logvar


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
