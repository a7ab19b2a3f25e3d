"""Token files: tokenize a corpus once into cached uint16 memmaps, split into train and validation.

Cache layout: ``<cache>/tokens/<key>/{train.bin, val.bin, meta.json, freq.npy, features16.npy}``, where the key
hashes the corpus id (content-addressed), the tokenizer, the vocabulary size, the validation
fraction and :data:`FORMAT`. A key folder is built under a temporary name and renamed into
place whole, so an interrupted prepare never leaves a half-written cache; ``meta.json`` in the
folder means it is complete.

The split rule (text corpora), deterministic and interleaved so validation samples the whole
corpus: cut the text into chunks of about :data:`CHUNK_CHARS` characters (fewer for a small
corpus, so that it still yields about 4 validation chunks), each ending at the first line end
at or after that length (else at a space, else exactly there); chunk ``i`` (from 0) goes to
validation when ``floor((i + 1) * f) > floor(i * f)`` for ``f = val_fraction``: for 0.05, chunks
19, 39, 59, ... Each split is the concatenation of its chunks' tokens, in order.

A pre-tokenized ``.bin`` (little-endian uint16 ids) is not copied: train is its first
``1 - val_fraction`` of tokens and validation the rest, both read from the file in place.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from workbench.config import MAX_VOCAB, DataConfig, check_tokenizer_config
from workbench.data.corpus import CorpusText, cache_root, corpus_id_for, is_token_file, load_text
from workbench.data.features import cooccurrence_features
from workbench.data.tokenizer import Tokenizer, get_tokenizer
from workbench.errors import DataError

FORMAT = 1  # bump when the split rule or the file layout changes: old caches are then ignored
CHUNK_CHARS = 4096
_MIN_VAL_CHUNKS = 4
_ENCODE_BATCH = 256  # chunks per encode_batch call: bounds the Python int lists alive at once
_DTYPE = np.dtype("<u2")
_META = "meta.json"
PRETOKENIZED = "pretokenized"

Progress = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class TokenData:
    """A corpus's train and validation tokens as read-only uint16 arrays (memmaps), with provenance.

    ``vocab_size`` bounds every id: for BPE it is ``data.vocab_size`` (the trained tokenizer may
    hold fewer ids on a small corpus), for bytes 256, for a ``.bin`` ``max(max id + 1, data.vocab_size)``.
    """

    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    tokenizer_name: str
    corpus_id: str
    cache_key: str
    cache_path: Path

    def token_frequencies(self) -> np.ndarray:
        """Count of each id in ``train``: int64, shape ``(vocab_size,)``; cached as ``freq.npy``."""
        return _cached_array(
            self.cache_path / "freq.npy",
            lambda: np.bincount(self.train, minlength=self.vocab_size).astype(np.int64),
        )

    def token_features(self, dim: int = 16) -> np.ndarray:
        """Distributional features of each id in ``train`` (:mod:`workbench.data.features`):
        float32, shape ``(vocab_size, dim)``, rows of unit length; cached as ``features{dim}.npy``."""
        return _cached_array(
            self.cache_path / f"features{dim}.npy",
            lambda: cooccurrence_features(self.train, self.vocab_size, dim),
        )


def _cached_array(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``path``'s array, computed and saved first if absent. Written under a temporary name and
    renamed into place, so workers computing it at once never read a half-written file."""
    if path.is_file():
        return np.load(path)
    array = compute()
    tmp = path.with_name(f"{path.stem}.tmp-{uuid.uuid4().hex}.npy")
    try:
        np.save(tmp, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return array


def prepare_tokens(cfg: DataConfig, progress: Progress | None = None) -> TokenData:
    """Tokenize ``cfg.corpus`` into cached train/validation token files, or open them if cached.

    The first call trains the tokenizer (if BPE and not cached) and writes the files; later
    calls with the same corpus content and settings only reopen them. ``progress`` receives
    one-line status messages for the slow steps.
    """
    if not 0.0 < cfg.val_fraction < 1.0:
        raise DataError(f"data.val_fraction: {cfg.val_fraction} is not in (0, 1); give e.g. 0.05")
    if is_token_file(cfg.corpus):
        return _prepare_bin(cfg, progress)
    check_tokenizer_config(cfg)
    corpus = load_text(cfg)
    tokenizer_name = "byte" if cfg.tokenizer == "byte" else f"bpe{cfg.vocab_size}"
    key = cache_key(corpus.corpus_id, tokenizer_name, cfg.val_fraction)
    folder = cache_root(cfg) / "tokens" / key
    if not (folder / _META).is_file():
        tokenizer = get_tokenizer(cfg, corpus, progress)
        vocab_size = 256 if cfg.tokenizer == "byte" else cfg.vocab_size
        _build_text_cache(folder, corpus, tokenizer, vocab_size, cfg.val_fraction, progress)
    meta = _read_meta(folder)
    return TokenData(
        train=_open_tokens(folder / "train.bin", meta["n_train"]),
        val=_open_tokens(folder / "val.bin", meta["n_val"]),
        vocab_size=meta["vocab_size"],
        tokenizer_name=meta["tokenizer"],
        corpus_id=meta["corpus_id"],
        cache_key=key,
        cache_path=folder,
    )


def cache_key(corpus_id: str, tokenizer_name: str, val_fraction: float) -> str:
    """The token-cache folder name: readable prefix, then a hash of everything the files depend on."""
    spec = {"format": FORMAT, "corpus_id": corpus_id, "tokenizer": tokenizer_name, "val": val_fraction}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return f"{corpus_id}-{tokenizer_name}-{digest[:10]}"


def split_chunks(text: str, val_fraction: float) -> tuple[list[str], list[bool]]:
    """Cut ``text`` into chunks and flag the validation ones, by the rule in the module docstring."""
    target = max(1, min(CHUNK_CHARS, int(len(text) * val_fraction / _MIN_VAL_CHUNKS)))
    chunks: list[str] = []
    start = 0
    while start < len(text):
        cut = start + target
        if cut < len(text):
            end = text.find("\n", cut - 1, cut + target)
            if end == -1:
                end = text.find(" ", cut - 1, cut + target)
            cut = cut if end == -1 else end + 1
        chunks.append(text[start:cut])
        start = cut
    # Exact rational arithmetic: 0.05 as a float would misplace chunks where (i + 1) * f is whole.
    f = Fraction(repr(val_fraction))
    is_val = [math.floor((i + 1) * f) > math.floor(i * f) for i in range(len(chunks))]
    return chunks, is_val


def _build_text_cache(
    folder: Path,
    corpus: CorpusText,
    tokenizer: Tokenizer,
    vocab_size: int,
    val_fraction: float,
    progress: Progress | None,
) -> None:
    chunks, is_val = split_chunks(corpus.text, val_fraction)
    if not any(is_val):
        raise DataError(
            f"data.val_fraction: corpus {corpus.corpus_id} ({len(corpus.text)} characters) is too small "
            f"to hold out {val_fraction}; give a larger corpus or val_fraction"
        )
    if progress:
        progress(f"tokenizing {corpus.corpus_id} with {tokenizer.name} ({len(chunks)} chunks)")
    parts: dict[bool, list[np.ndarray]] = {False: [], True: []}
    for lo in range(0, len(chunks), _ENCODE_BATCH):
        encoded = tokenizer.encode_batch(chunks[lo : lo + _ENCODE_BATCH])
        for ids, in_val in zip(encoded, is_val[lo : lo + _ENCODE_BATCH], strict=True):
            parts[in_val].append(np.asarray(ids, dtype=_DTYPE))
    train, val = np.concatenate(parts[False]), np.concatenate(parts[True])
    meta = {
        "format": FORMAT,
        "corpus_id": corpus.corpus_id,
        "tokenizer": tokenizer.name,
        "vocab_size": vocab_size,
        "val_fraction": val_fraction,
        "n_train": len(train),
        "n_val": len(val),
    }

    def write(tmp: Path) -> None:
        train.tofile(tmp / "train.bin")
        val.tofile(tmp / "val.bin")

    _publish(folder, meta, write)
    if progress:
        progress(f"wrote {len(train):,} train and {len(val):,} validation tokens to {folder}")


def _prepare_bin(cfg: DataConfig, progress: Progress | None) -> TokenData:
    path = Path(cfg.corpus).expanduser()
    if not path.is_file():
        raise DataError(
            f"data.corpus: token file '{cfg.corpus}' does not exist; give a .bin of uint16 token ids"
        )
    size = path.stat().st_size
    if size % _DTYPE.itemsize:
        raise DataError(
            f"data.corpus: '{cfg.corpus}' has {size} bytes, not a multiple of 2; "
            "a .bin must hold little-endian uint16 token ids"
        )
    if size < 2 * _DTYPE.itemsize:
        raise DataError(
            f"data.corpus: '{cfg.corpus}' holds fewer than 2 tokens; nothing to train and validate on"
        )
    if cfg.vocab_size > MAX_VOCAB:
        raise DataError(
            f"data.vocab_size: {cfg.vocab_size} exceeds {MAX_VOCAB}, the most uint16 token ids can address"
        )
    corpus_id = corpus_id_for(path.stem, _file_sha256(path))
    key = cache_key(corpus_id, f"{PRETOKENIZED}{cfg.vocab_size}", cfg.val_fraction)
    folder = cache_root(cfg) / "tokens" / key
    tokens = np.memmap(path, dtype=_DTYPE, mode="r")
    if not (folder / _META).is_file():
        if progress:
            progress(f"scanning {len(tokens):,} tokens of {path}")
        n_val = min(len(tokens) - 1, max(1, round(len(tokens) * cfg.val_fraction)))
        new_meta: dict[str, Any] = {
            "format": FORMAT,
            "corpus_id": corpus_id,
            "tokenizer": PRETOKENIZED,
            "vocab_size": max(int(tokens.max()) + 1, cfg.vocab_size),
            "val_fraction": cfg.val_fraction,
            "n_train": len(tokens) - n_val,
            "n_val": n_val,
        }
        _publish(folder, new_meta, lambda tmp: None)
    meta = _read_meta(folder)
    return TokenData(
        train=tokens[: meta["n_train"]],
        val=tokens[meta["n_train"] :],
        vocab_size=meta["vocab_size"],
        tokenizer_name=PRETOKENIZED,
        corpus_id=corpus_id,
        cache_key=key,
        cache_path=folder,
    )


def _publish(folder: Path, meta: dict[str, Any], write: Callable[[Path], None]) -> None:
    """Fill a temporary sibling folder with ``write`` and ``meta.json``, then rename it to ``folder``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        write(tmp)
        (tmp / _META).write_text(json.dumps(meta, indent=1, sort_keys=True))
        try:
            os.rename(tmp, folder)
        except OSError:
            # Another process published the same key first (identical content), or a stale
            # folder without meta.json is in the way; only the latter needs replacing.
            if (folder / _META).is_file():
                return
            shutil.rmtree(folder)
            os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_meta(folder: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((folder / _META).read_text())
    return meta


def _open_tokens(path: Path, n: int) -> np.ndarray:
    return np.memmap(path, dtype=_DTYPE, mode="r", shape=(n,))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
