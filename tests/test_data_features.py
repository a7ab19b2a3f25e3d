"""Distributional token features (workbench/data/features.py): tokens used alike come out alike."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data.features import cooccurrence_features


def _two_classes_corpus(n: int = 20_000, seed: int = 0) -> np.ndarray:
    """Ids 0-3 are "nouns" and 4-7 "verbs": a noun is always followed by a verb and a verb by a
    noun, each drawn at random from its class. Id 8 never occurs."""
    rng = np.random.default_rng(seed)
    nouns, verbs = rng.integers(0, 4, n), rng.integers(4, 8, n)
    return np.stack([nouns, verbs], axis=1).reshape(-1).astype(np.uint16)


def test_tokens_with_the_same_neighbours_get_the_same_direction() -> None:
    features = cooccurrence_features(_two_classes_corpus(), vocab_size=9, dim=2)
    assert features.shape == (9, 2) and features.dtype == np.float32
    cosine = features @ features.T
    within = min(cosine[i, j] for cls in (range(4), range(4, 8)) for i in cls for j in cls)
    across = max(cosine[i, j] for i in range(4) for j in range(4, 8))
    assert within > 0.99 and across < 0.5, (within, across)
    np.testing.assert_allclose(np.linalg.norm(features[:8], axis=1), 1.0, rtol=1e-5)


def test_a_token_never_seen_gets_a_zero_row() -> None:
    features = cooccurrence_features(_two_classes_corpus(), vocab_size=9, dim=2)
    assert not features[8].any()


@pytest.mark.parametrize("dim", [0, 10])
def test_a_dimension_outside_the_vocabulary_is_refused(dim: int) -> None:
    with pytest.raises(ValueError, match="dim must be in"):
        cooccurrence_features(_two_classes_corpus(), vocab_size=9, dim=dim)
