"""Tokenizers: UTF-8 bytes (256 ids) or a byte-level BPE trained offline on the corpus.

A BPE is trained once per (corpus, vocab size) with the ``tokenizers`` library and cached as
tokenizer JSON under ``<cache>/tokenizers/``; later calls load the JSON.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from workbench.config import DataConfig, check_tokenizer_config
from workbench.data.corpus import CorpusText, cache_root

_TRAIN_PIECE_CHARS = 1 << 16


@runtime_checkable
class Tokenizer(Protocol):
    """What the data path needs from a tokenizer. ``vocab_size`` bounds every id ``encode`` returns."""

    @property
    def name(self) -> str: ...

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255. Decoding replaces an incomplete UTF-8 sequence with U+FFFD."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


class BPETokenizer:
    """A byte-level BPE (GPT-2 style pre-splitting, no prefix space, no special tokens): lossless on any text."""

    def __init__(self, hf: HFTokenizer, name: str) -> None:
        self._hf = hf
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def vocab_size(self) -> int:
        return self._hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._hf.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        return self._hf.decode(list(ids))

    def to_file(self, path: Path) -> None:
        """Write the tokenizer JSON atomically (temporary file, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
        try:
            self._hf.save(str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def from_file(cls, path: Path, name: str) -> BPETokenizer:
        return cls(HFTokenizer.from_file(str(path)), name)


def bpe_cache_path(cfg: DataConfig, corpus_id: str) -> Path:
    """Where the BPE for ``corpus_id`` at ``cfg.vocab_size`` is cached."""
    return cache_root(cfg) / "tokenizers" / f"{corpus_id}-bpe{cfg.vocab_size}.json"


def get_tokenizer(
    cfg: DataConfig,
    corpus: CorpusText | str,
    progress: Callable[[str], None] | None = None,
) -> Tokenizer:
    """The tokenizer ``cfg.tokenizer`` names, for ``corpus`` (a :class:`CorpusText`, or raw text).

    A BPE is trained on the whole corpus (validation text included: the merges carry no labels,
    and one tokenizer per corpus serves every split) and cached; a later call loads it.
    """
    check_tokenizer_config(cfg)
    if cfg.tokenizer == "byte":
        return ByteTokenizer()
    if isinstance(corpus, str):
        corpus = CorpusText.from_text(corpus, "text")
    name = f"bpe{cfg.vocab_size}"
    path = bpe_cache_path(cfg, corpus.corpus_id)
    if path.is_file():
        return BPETokenizer.from_file(path, name)
    if progress:
        progress(
            f"training a {name} tokenizer on {corpus.corpus_id} ({len(corpus.text) / 1e6:.1f} M characters)"
        )
    tokenizer = train_bpe(corpus.text, cfg.vocab_size, name)
    tokenizer.to_file(path)
    return tokenizer


def train_bpe(text: str, vocab_size: int, name: str) -> BPETokenizer:
    """Train a byte-level BPE of at most ``vocab_size`` ids on ``text`` (fewer if the text runs out of pairs)."""
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    hf.train_from_iterator(_pieces(text), trainer=trainer)
    return BPETokenizer(hf, name)


def _pieces(text: str) -> Iterator[str]:
    # The trainer counts words per piece, so cutting at line ends keeps the counts exact.
    start = 0
    while start < len(text):
        end = text.find("\n", start + _TRAIN_PIECE_CHARS)
        end = len(text) if end == -1 else end + 1
        yield text[start:end]
        start = end
