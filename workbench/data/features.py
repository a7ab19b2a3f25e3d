"""Distributional token features: what a token's neighbours say about it, learned from counts.

Hash layers' clustered and dispersed variants (Roller et al. 2021) group tokens by similarity;
the paper takes it from a pretrained model's embeddings, which the workbench does not have. The
classic substitute needs only the training split: count each token's left and right neighbours
(a V x 2V co-occurrence matrix over a window of one), reweight by positive pointwise mutual
information, and keep the top singular directions (Levy & Goldberg 2014 show this recovers what
word2vec learns). Rows are scaled to unit length, so k-means on them clusters by cosine.

Choices: window 1 on each side, kept apart (left and right contexts are different features);
at most :data:`MAX_TOKENS` training tokens, enough to see every pair that matters at V <= 65536;
PPMI with context counts raised to 0.75 (word2vec's smoothing of rare contexts); singular vectors
weighted by the square root of their singular values (a singular vector's sign is arbitrary,
which k-means does not mind); a token never seen gets a zero row.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_TOKENS = 50_000_000
_CONTEXT_POWER = 0.75


def cooccurrence_features(tokens: np.ndarray, vocab_size: int, dim: int) -> np.ndarray:
    """Unit-length features ``[vocab_size, dim]`` (float32) from a token sequence's neighbours."""
    if dim < 1 or dim > vocab_size:
        raise ValueError(f"dim must be in [1, vocab_size={vocab_size}], got {dim}")
    ids = np.asarray(tokens[:MAX_TOKENS], dtype=np.int64)
    V = vocab_size
    # pairs[v, u]: how often u directly follows v; its transpose how often u directly precedes v.
    pairs = np.bincount(ids[:-1] * V + ids[1:], minlength=V * V).reshape(V, V).astype(np.float64)
    counts_VC = np.concatenate([pairs, pairs.T], axis=1)  # [right contexts | left contexts]
    total = counts_VC.sum()
    if total == 0:
        return np.zeros((V, dim), dtype=np.float32)
    row_V = counts_VC.sum(axis=1, keepdims=True)
    context_C = counts_VC.sum(axis=0, keepdims=True) ** _CONTEXT_POWER
    context_C = context_C / context_C.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts_VC / total) - np.log(row_V / total) - np.log(context_C)
    ppmi = np.where(counts_VC > 0, np.maximum(pmi, 0.0), 0.0)
    # The left singular vectors of P are the eigenvectors of P P^T, whose eigenvalues are the
    # squared singular values: one V x V eigendecomposition, several times faster than the SVD.
    p_VC = torch.from_numpy(ppmi)
    eigvals_V, eigvecs_VV = torch.linalg.eigh(p_VC @ p_VC.T)  # ascending
    top = torch.arange(V - 1, V - 1 - dim, -1)
    singular_K = eigvals_V[top].clamp_min(0).sqrt()
    features = (eigvecs_VV[:, top] * singular_K.sqrt()).numpy()
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.where(norms > 0, features / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
