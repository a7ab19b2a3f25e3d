"""Tests of workbench.data: corpus text, tokenizers, cached token files, batches."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.config import DataConfig
from workbench.data import (
    Batches,
    BPETokenizer,
    ByteTokenizer,
    DeviceTokens,
    Tokenizer,
    eval_batches,
    get_tokenizer,
    load_text,
    prepare_tokens,
    random_batch,
    split_chunks,
)
from workbench.data import tokenizer as tokenizer_module
from workbench.data import tokens as tokens_module
from workbench.errors import DataError

SAMPLE = "Naïve café — 日本語 🙂\n\n  two  spaces\ttab\r\nend"


def _write_corpus(path: Path, n_lines: int = 400) -> Path:
    words = ["the", "lord", "said", "unto", "moses", "and", "aaron", "behold", "land", "of", "egypt"]
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 12))).capitalize() + "." for _ in range(n_lines)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    return _write_corpus(tmp_path / "corpus.txt")


def _cfg(tmp_path: Path, corpus: Path | str, **kw: object) -> DataConfig:
    return DataConfig(corpus=str(corpus), cache_dir=str(tmp_path / "cache"), **kw)  # type: ignore[arg-type]


# corpus


def test_kjv_text_looks_like_the_bible() -> None:
    corpus = load_text(DataConfig())
    text = corpus.text
    assert text.startswith("The First Book of Moses, called Genesis\n\nIn the beginning God created")
    assert len(text) > 4e6
    assert "The Revelation of Saint John" in text
    assert text.rstrip().endswith("The grace of our Lord Jesus Christ be with you all. Amen.")
    assert not re.search(r"\d+:\d+", text), "verse markers are stripped"
    assert corpus.corpus_id.startswith("kjv-")
    assert load_text(DataConfig()) == corpus


def test_text_file_and_folder(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second", encoding="utf-8")
    (folder / "a.txt").write_text("first", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("third", encoding="utf-8")
    (folder / "ignored.md").write_text("not text corpus", encoding="utf-8")
    assert load_text(_cfg(tmp_path, folder)).text == "first\n\nsecond\n\nthird"
    single = load_text(_cfg(tmp_path, folder / "a.txt"))
    assert single.text == "first"
    assert single.corpus_id.startswith("a-")
    assert single.corpus_id != load_text(_cfg(tmp_path, folder / "b.txt")).corpus_id


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: p / "missing.txt",
            r"data\.corpus: file '.*missing\.txt' does not exist; give a \.txt file",
        ),
        (lambda p: (p / "empty").mkdir() or p / "empty", r"data\.corpus: folder .* has no \.txt files"),
        (
            lambda p: (p / "latin1.txt").write_bytes(b"caf\xe9") and p / "latin1.txt",
            r"not UTF-8 .*0xe9 at offset 3",
        ),
        (lambda p: (p / "blank.txt").write_text(" \n") and p / "blank.txt", r"holds no text"),
    ],
)
def test_bad_text_corpus_errors(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(DataError, match=message):
        prepare_tokens(_cfg(tmp_path, make(tmp_path)))


# tokenizers


def test_byte_tokenizer_round_trip() -> None:
    tok = ByteTokenizer()
    assert isinstance(tok, Tokenizer)
    ids = tok.encode(SAMPLE)
    assert max(ids) < tok.vocab_size == 256
    assert tok.decode(ids) == SAMPLE
    assert tok.encode_batch(["a", "é"]) == [[97], [0xC3, 0xA9]]


def test_bpe_round_trip_and_cache(tmp_path: Path, corpus_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path, corpus_file, vocab_size=300)
    corpus = load_text(cfg)
    tok = get_tokenizer(cfg, corpus)
    assert isinstance(tok, BPETokenizer) and isinstance(tok, Tokenizer)
    assert 256 < tok.vocab_size <= 300
    assert tok.name == "bpe300"
    ids = tok.encode(corpus.text[:500])
    assert len(ids) < 500 and max(ids) < tok.vocab_size
    assert tok.decode(ids) == corpus.text[:500]
    assert tok.decode(tok.encode(SAMPLE)) == SAMPLE, "byte-level: lossless on unseen characters"

    def no_training(*args: object) -> None:
        raise AssertionError("retrained a cached tokenizer")

    monkeypatch.setattr(tokenizer_module, "train_bpe", no_training)
    again = get_tokenizer(cfg, corpus)
    assert again.encode(corpus.text) == tok.encode(corpus.text)


def test_tokenizer_config_errors(tmp_path: Path, corpus_file: Path) -> None:
    with pytest.raises(DataError, match=r"data\.vocab_size: 70000 is out of range.*257\.\.65536"):
        prepare_tokens(_cfg(tmp_path, corpus_file, vocab_size=70_000))
    with pytest.raises(DataError, match=r"data\.vocab_size: 256 is out of range"):
        prepare_tokens(_cfg(tmp_path, corpus_file, vocab_size=256))
    with pytest.raises(DataError, match=r"data\.tokenizer: unknown tokenizer 'wordpiece'; valid: byte, bpe"):
        prepare_tokens(_cfg(tmp_path, corpus_file, tokenizer="wordpiece"))
    with pytest.raises(DataError, match=r"data\.val_fraction: 0\.0 is not in \(0, 1\)"):
        prepare_tokens(_cfg(tmp_path, corpus_file, val_fraction=0.0))


# token files


def test_split_rule_is_interleaved_and_lossless(corpus_file: Path) -> None:
    text = corpus_file.read_text()
    chunks, is_val = split_chunks(text, 0.05)
    assert "".join(chunks) == text
    assert all(c.endswith("\n") for c in chunks)
    assert [i for i, v in enumerate(is_val) if v] == list(range(19, len(chunks), 20))
    assert split_chunks(text, 0.05) == (chunks, is_val)
    _, quarter = split_chunks(text, 0.25)
    assert [i for i, v in enumerate(quarter) if v][:3] == [3, 7, 11]


def test_prepare_tokens_bpe(tmp_path: Path, corpus_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path, corpus_file, vocab_size=300)
    data = prepare_tokens(cfg)
    assert data.train.dtype == np.uint16 and isinstance(data.train, np.memmap)
    assert data.vocab_size == 300 and data.tokenizer_name == "bpe300"
    assert len(data.val) > 0 and len(data.train) > 10 * len(data.val)

    tok = get_tokenizer(cfg, load_text(cfg))
    chunks, is_val = split_chunks(load_text(cfg).text, cfg.val_fraction)
    encoded = tok.encode_batch(chunks)
    assert len(data.train) + len(data.val) == sum(map(len, encoded))
    assert data.val.tolist() == [i for ids, v in zip(encoded, is_val, strict=True) if v for i in ids]
    assert 0.03 < len(data.val) / (len(data.train) + len(data.val)) < 0.08

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("re-tokenized a cached corpus")

    monkeypatch.setattr(tokens_module, "get_tokenizer", no_work)
    monkeypatch.setattr(tokens_module, "_build_text_cache", no_work)
    again = prepare_tokens(cfg)
    assert again.cache_key == data.cache_key
    np.testing.assert_array_equal(again.train, data.train)
    np.testing.assert_array_equal(again.val, data.val)


def test_prepare_tokens_is_deterministic_across_caches(tmp_path: Path, corpus_file: Path) -> None:
    first = prepare_tokens(
        DataConfig(corpus=str(corpus_file), vocab_size=300, cache_dir=str(tmp_path / "c1"))
    )
    second = prepare_tokens(
        DataConfig(corpus=str(corpus_file), vocab_size=300, cache_dir=str(tmp_path / "c2"))
    )
    assert first.cache_key == second.cache_key
    np.testing.assert_array_equal(first.train, second.train)
    np.testing.assert_array_equal(first.val, second.val)


def test_prepare_tokens_byte_and_frequencies(tmp_path: Path, corpus_file: Path) -> None:
    data = prepare_tokens(_cfg(tmp_path, corpus_file, tokenizer="byte"))
    assert data.vocab_size == 256 and data.tokenizer_name == "byte"
    assert len(data.train) + len(data.val) == len(corpus_file.read_bytes())
    freq = data.token_frequencies()
    assert freq.dtype == np.int64 and freq.shape == (256,)
    assert freq.sum() == len(data.train) and freq[ord("e")] > 0
    assert (data.cache_path / "freq.npy").is_file()
    np.testing.assert_array_equal(data.token_frequencies(), freq)
    features = data.token_features(dim=8)
    assert features.shape == (256, 8) and (data.cache_path / "features8.npy").is_file()
    np.testing.assert_array_equal(data.token_features(dim=8), features)


def test_interrupted_prepare_leaves_no_cache(
    tmp_path: Path, corpus_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(tmp_path, corpus_file, tokenizer="byte")

    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    # Interrupted at the last step: token files and meta.json are written, the rename is not.
    monkeypatch.setattr(tokens_module.os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_tokens(cfg)
    assert list((tmp_path / "cache" / "tokens").iterdir()) == []
    monkeypatch.undo()
    assert len(prepare_tokens(cfg).val) > 0


def test_too_small_corpus_for_validation(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("one line only\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.val_fraction: corpus .* is too small"):
        prepare_tokens(_cfg(tmp_path, tiny, tokenizer="byte"))


def test_pretokenized_bin(tmp_path: Path) -> None:
    ids = np.arange(1000, dtype="<u2") % 777
    path = tmp_path / "ids.bin"
    ids.tofile(path)
    data = prepare_tokens(_cfg(tmp_path, path, vocab_size=300, val_fraction=0.1))
    assert data.vocab_size == 777 and data.tokenizer_name == "pretokenized"
    np.testing.assert_array_equal(data.train, ids[:900])
    np.testing.assert_array_equal(data.val, ids[900:])
    assert prepare_tokens(_cfg(tmp_path, path, vocab_size=4096)).vocab_size == 4096
    assert data.token_frequencies().sum() == 900


def test_pretokenized_bin_errors(tmp_path: Path) -> None:
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01\x00\x02")
    with pytest.raises(DataError, match=r"data\.corpus: '.*odd\.bin' has 3 bytes, not a multiple of 2"):
        prepare_tokens(_cfg(tmp_path, odd))
    with pytest.raises(DataError, match=r"data\.corpus: token file '.*nope\.bin' does not exist"):
        prepare_tokens(_cfg(tmp_path, tmp_path / "nope.bin"))
    good = tmp_path / "good.bin"
    np.arange(10, dtype="<u2").tofile(good)
    with pytest.raises(DataError, match=r"data\.vocab_size: 65537 exceeds 65536"):
        prepare_tokens(_cfg(tmp_path, good, vocab_size=65_537))


def test_prepare_kjv(tmp_path: Path) -> None:
    data = prepare_tokens(DataConfig(vocab_size=512, cache_dir=str(tmp_path)))
    total = len(data.train) + len(data.val)
    assert total > 1_000_000 and 0.045 < len(data.val) / total < 0.055
    assert data.corpus_id.startswith("kjv-") and data.vocab_size == 512
    assert int(data.train.max()) < 512


# batches


def test_random_batch_shapes_shift_and_determinism() -> None:
    tokens = np.arange(5000, dtype=np.uint16)
    x, y = random_batch(tokens, 4, 16, torch.Generator().manual_seed(0), "cpu")
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y - x, torch.ones_like(x))
    x2, y2 = random_batch(tokens, 4, 16, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = random_batch(tokens, 4, 16, torch.Generator().manual_seed(1), "cpu")
    assert not torch.equal(x, x3)
    assert y.view(-1).numel() == 64, "contiguous targets"


def test_device_batches_draw_the_windows_of_random_batch() -> None:
    tokens = (np.arange(3000) * 7 % 1000).astype(np.uint16)
    g_host, g_dev = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    batches = Batches(DeviceTokens(tokens, "cpu"), 8, 32, 3, g_dev, torch.device("cpu"))
    for _ in range(3):
        x, y = random_batch(tokens, 8, 32, g_host)
        xd, yd = batches.next()
        assert torch.equal(x, xd) and torch.equal(y, yd) and xd.dtype == torch.int64


def test_random_batch_needs_one_window() -> None:
    with pytest.raises(DataError, match=r"model\.seq_len: 16 needs at least 17 tokens"):
        random_batch(np.arange(16, dtype=np.uint16), 2, 16, torch.Generator())


def test_eval_batches_at_the_head_take_the_first_windows() -> None:
    val = np.arange(1000, dtype=np.uint16)
    batches = eval_batches(val, seq_len=10, n_tokens=95, batch_size=4, windows="head")
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert torch.equal(x.flatten(), torch.arange(100)) and torch.equal(y.flatten(), torch.arange(1, 101))
    capped = eval_batches(val[:35], seq_len=10, n_tokens=10_000, batch_size=8)
    assert sum(b[0].shape[0] for b in capped) == 3
    with pytest.raises(
        DataError, match=r"data\.val_fraction: the validation split holds 10 tokens.*model\.seq_len"
    ):
        eval_batches(val[:10], seq_len=10, n_tokens=100, batch_size=4)


def test_eval_batches_by_default_cover_the_whole_split_evenly() -> None:
    """A corpus whose sources follow one another must be scored on all of them, not the first."""
    val = np.arange(1001, dtype=np.uint16)  # 100 windows of 10
    batches = eval_batches(val, seq_len=10, n_tokens=95, batch_size=4)
    x_WT = torch.cat([b[0] for b in batches])
    y_WT = torch.cat([b[1] for b in batches])
    assert x_WT.shape == (10, 10)
    starts = x_WT[:, 0].tolist()
    assert starts == list(range(0, 1000, 100))  # one window in each tenth, the first at 0
    assert torch.equal(y_WT, x_WT + 1)  # each window's targets are its next tokens
    all_windows = eval_batches(val, seq_len=10, n_tokens=10**6, batch_size=64)
    head = eval_batches(val, seq_len=10, n_tokens=10**6, batch_size=64, windows="head")
    assert all(torch.equal(a[0], b[0]) for a, b in zip(all_windows, head, strict=True))  # all: same set


def test_eval_batches_name_an_unknown_placement() -> None:
    with pytest.raises(DataError, match=r"train\.eval_windows: 'tail' is not one of spread, head"):
        eval_batches(np.arange(100, dtype=np.uint16), 10, 20, 2, windows="tail")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_tokens_on_cuda_match_random_batch() -> None:
    tokens = (np.arange(3000) * 7 % 1000).astype(np.uint16)
    batches = Batches(tokens, 8, 32, 1, torch.Generator().manual_seed(5), torch.device("cuda"))
    xd, yd = batches.next()
    x, y = random_batch(tokens, 8, 32, torch.Generator().manual_seed(5), "cuda")
    assert xd.is_cuda and x.is_cuda and torch.equal(x, xd) and torch.equal(y, yd)
